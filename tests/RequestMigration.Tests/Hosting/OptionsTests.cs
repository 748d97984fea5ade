using RequestMigration.Discovery;
using RequestMigration.Discovery.Etcd;
using RequestMigration.Routing;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Hosting;

/// <summary>Bad environment values get an error naming the variable and, where there is a fixed set, the valid values.</summary>
public sealed class OptionsTests
{
    private static Func<string, string?> Env(params (string Key, string Value)[] vars)
    {
        var d = vars.ToDictionary(v => v.Key, v => v.Value);
        return k => d.GetValueOrDefault(k);
    }

    [Fact]
    public void Defaults_match_the_documentation()
    {
        var o = new RuntimeOptions().ApplyEnvironment(Env());
        o.Discovery.Store.ShouldBe(StoreKind.File);
        o.Discovery.LeaseTtl.ShouldBe(TimeSpan.FromSeconds(10));
        o.Transport.ShouldBe(TransportKind.Auto);
        o.MaxFrameSize.ShouldBe(16 * 1024 * 1024);
        var r = new RouterOptions().ApplyEnvironment(Env());
        r.InhibitDuration.ShouldBe(TimeSpan.FromSeconds(5));
        r.MaxAttempts.ShouldBe(3);
        r.LoadBalancingPolicy.ShouldBe("RoundRobin");
        r.FirstItemTimeout.ShouldBeNull();
        o.QuicIdleTimeout.ShouldBe(TimeSpan.FromSeconds(30));
        o.EffectiveQuicKeepAlive.ShouldBe(TimeSpan.FromSeconds(10));
    }

    [Fact]
    public void Router_and_quic_environment_values_are_applied_and_checked()
    {
        var r = new RouterOptions().ApplyEnvironment(Env(("DYN_LB_POLICY", "least_connections"), ("DYN_FIRST_ITEM_TIMEOUT_SECS", "2.5")));
        r.LoadBalancingPolicy.ShouldBe("least_connections");
        r.FirstItemTimeout.ShouldBe(TimeSpan.FromSeconds(2.5));
        new RouterOptions().ApplyEnvironment(Env(("DYN_FIRST_ITEM_TIMEOUT_SECS", "0"))).FirstItemTimeout.ShouldBeNull();
        Should.Throw<ArgumentException>(() => new RouterOptions().ApplyEnvironment(Env(("DYN_FIRST_ITEM_TIMEOUT_SECS", "soon")))).Message.ShouldContain("DYN_FIRST_ITEM_TIMEOUT_SECS='soon'");

        var o = new RuntimeOptions().ApplyEnvironment(Env(("DYN_QUIC_IDLE_TIMEOUT_SECS", "12"), ("DYN_QUIC_KEEPALIVE_SECS", "2")));
        o.QuicIdleTimeout.ShouldBe(TimeSpan.FromSeconds(12));
        o.EffectiveQuicKeepAlive.ShouldBe(TimeSpan.FromSeconds(2));
        Should.Throw<ArgumentOutOfRangeException>(() => new RuntimeOptions { QuicIdleTimeout = TimeSpan.FromSeconds(5), QuicKeepAliveInterval = TimeSpan.FromSeconds(5) }.Validate())
            .Message.ShouldContain("DYN_QUIC_KEEPALIVE_SECS");
        Should.Throw<ArgumentOutOfRangeException>(() => new RuntimeOptions { QuicIdleTimeout = TimeSpan.FromMilliseconds(200) }.Validate())
            .Message.ShouldContain("DYN_QUIC_IDLE_TIMEOUT_SECS");
    }

    [Fact]
    public void Environment_values_are_applied()
    {
        var o = new RuntimeOptions().ApplyEnvironment(Env(("DYN_STORE_KV", "mem"), ("DYN_TRANSPORT", "tcp"), ("DYN_FILE_KV", "/tmp/x"), ("DYN_MAX_FRAME_BYTES", "65536"), ("ETCD_ENDPOINTS", "http://10.0.0.1:2379, http://10.0.0.2:2379")));
        o.Discovery.Store.ShouldBe(StoreKind.Mem);
        o.Transport.ShouldBe(TransportKind.Tcp);
        o.Discovery.File.Root.ShouldBe("/tmp/x");
        o.MaxFrameSize.ShouldBe(65536);
        o.Discovery.Etcd.Endpoints.Select(e => e.Port).ShouldBe([2379, 2379]);
        new RouterOptions().ApplyEnvironment(Env(("DYN_INHIBITED_DURATION_SECS", "0"))).InhibitDuration.ShouldBe(TimeSpan.Zero);
    }

    [Theory]
    [InlineData("DYN_STORE_KV", "redis", "valid values: file, mem, etcd")]
    [InlineData("DYN_TRANSPORT", "udp", "valid values: auto, quic, tcp")]
    [InlineData("DYN_LISTEN_PORT", "70000", "between 0 and 65535")]
    [InlineData("DYN_MAX_FRAME_BYTES", "lots", "whole number")]
    [InlineData("DYN_DRAIN_TIMEOUT_SECS", "-1", "number of seconds")]
    [InlineData("DYN_TLS_INSECURE", "maybe", "boolean")]
    [InlineData("ETCD_ENDPOINTS", "127.0.0.1:2379", "not an endpoint like http://127.0.0.1:2379")]
    public void Bad_runtime_environment_values_are_named(string name, string value, string expected)
    {
        var ex = Should.Throw<ArgumentException>(() => new RuntimeOptions().ApplyEnvironment(Env((name, value))));
        ex.Message.ShouldContain(name);
        ex.Message.ShouldContain($"'{value}'");
        ex.Message.ShouldContain(expected);
    }

    [Fact]
    public void Bad_inhibit_duration_is_named()
    {
        var ex = Should.Throw<ArgumentException>(() => new RouterOptions().ApplyEnvironment(Env(("DYN_INHIBITED_DURATION_SECS", "five"))));
        ex.Message.ShouldContain("DYN_INHIBITED_DURATION_SECS='five'");
    }

    [Fact]
    public void Validation_names_the_bad_option()
    {
        Should.Throw<ArgumentException>(() => new RuntimeOptions { ListenHost = "localhost!" }.Validate()).Message.ShouldContain("DYN_LISTEN_HOST");
        Should.Throw<ArgumentOutOfRangeException>(() => new RuntimeOptions { MaxFrameSize = 10 }.Validate()).ParamName.ShouldBe("MaxFrameSize");
        Should.Throw<ArgumentException>(() => EtcdStoreOptions.ParseEndpoints(" , ")).Message.ShouldContain("names no endpoint");
    }

    [Fact]
    public void Missing_certificate_files_are_named()
    {
        var o = new RuntimeOptions { Discovery = new DiscoveryOptions { Store = StoreKind.Mem }, Transport = TransportKind.Tcp };
        o.Tls.CaCertificateFile = "/nonexistent/ca.pem";
        var rt = new RequestMigrationRuntime(o);
        var server = rt.CreateServer().AddEndpoint<string, string>(RequestMigration.Discovery.Instances.EndpointId.Parse("a/b/c"), (_, _) => AsyncEnumerable.Empty<string>());
        var ex = Should.Throw<FileNotFoundException>(() => server.StartAsync(TestContext.Current.CancellationToken).GetAwaiter().GetResult());
        ex.Message.ShouldContain("DYN_TLS_CA_FILE");
        ex.Message.ShouldContain("/nonexistent/ca.pem");
    }
}
