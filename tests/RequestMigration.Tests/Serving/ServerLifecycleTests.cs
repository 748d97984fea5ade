using System.Net.Sockets;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Discovery.Memory;
using RequestMigration.Serving;
using RequestMigration.Tests.BadInput;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Serving;

/// <summary>
/// Start-up and shutdown of an endpoint server (issue 8, "Server"): local mistakes fail the start before
/// anything is registered, and no race between start and stop leaves an instance behind.
/// </summary>
public sealed class ServerLifecycleTests : IAsyncLifetime
{
    private static readonly EndpointId Endpoint = EndpointId.Parse("test/lifecycle/generate");
    private readonly MemoryKeyValueStore _store = new();
    private readonly List<RequestMigrationRuntime> _runtimes = [];
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "rm-lifecycle-" + Guid.NewGuid().ToString("N"));

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        Directory.CreateDirectory(_dir);
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var rt in _runtimes)
        {
            await rt.DisposeAsync();
        }

        await _store.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    public static TheoryData<TransportKind> Transports => [TransportKind.Tcp, TransportKind.Quic];

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task A_missing_server_certificate_fails_the_start_naming_the_file_and_nothing_is_registered(TransportKind transport)
    {
        SkipWithoutQuic(transport);
        var missing = Path.Combine(_dir, "no-such-server.pem");
        var server = Server(transport, o => o.Tls.CertificateFile = missing);

        var ex = await Should.ThrowAsync<FileNotFoundException>(() => server.StartAsync(Ct));

        ex.Message.ShouldContain("DYN_TLS_CERT_FILE");
        ex.Message.ShouldContain(missing);
        (await Registered()).ShouldBeEmpty("a server that cannot handshake must not be registered");
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task An_unreadable_private_key_fails_the_start_naming_the_file_and_nothing_is_registered(TransportKind transport)
    {
        SkipWithoutQuic(transport);
        var garbage = Path.Combine(_dir, "garbage-key.pem");
        await File.WriteAllTextAsync(garbage, "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", Ct);
        var server = Server(transport, o => o.Tls.PrivateKeyFile = garbage);

        var ex = await Should.ThrowAsync<ArgumentException>(() => server.StartAsync(Ct));

        ex.Message.ShouldContain(garbage);
        (await Registered()).ShouldBeEmpty();
    }

    [Fact]
    public async Task A_missing_private_key_fails_the_start_of_a_tcp_server_naming_the_variable()
    {
        var missing = Path.Combine(_dir, "no-such-key.pem");
        var server = Server(TransportKind.Tcp, o => o.Tls.PrivateKeyFile = missing);

        var ex = await Should.ThrowAsync<FileNotFoundException>(() => server.StartAsync(Ct));

        ex.Message.ShouldContain("DYN_TLS_KEY_FILE");
        ex.Message.ShouldContain(missing);
        (await Registered()).ShouldBeEmpty();
    }

    private static void SkipWithoutQuic(TransportKind transport) =>
        Assert.SkipWhen(transport == TransportKind.Quic && !TransportKinds.IsQuicSupported, "QUIC skipped: libmsquic 2.2+ is not installed here; the TCP case runs.");

    private async Task<IReadOnlyList<InstanceRecord>> Registered() =>
        await new InstanceRegistry(_store).ListAsync(Endpoint, Ct);

    private EndpointServer Server(TransportKind transport, Action<RuntimeOptions>? configure = null, IKeyValueStore? store = null)
    {
        var options = new RuntimeOptions
        {
            Transport = transport,
            Discovery = new DiscoveryOptions { Store = StoreKind.Mem },
            DrainTimeout = TimeSpan.FromSeconds(2),
        };
        options.Tls.CaCertificateFile = Path.Combine(RawConnection.CertsDir, "ca.pem");
        options.Tls.CertificateFile = Path.Combine(RawConnection.CertsDir, "server.pem");
        options.Tls.PrivateKeyFile = Path.Combine(RawConnection.CertsDir, "server-key.pem");
        configure?.Invoke(options);
        var runtime = new RequestMigrationRuntime(options, store: store ?? _store);
        _runtimes.Add(runtime);
        return runtime.CreateServer().AddEndpoint<string, string>(Endpoint, (s, _) => Echo(s));
    }

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> Echo(string s)
    {
        yield return s;
    }
#pragma warning restore CS1998
}
