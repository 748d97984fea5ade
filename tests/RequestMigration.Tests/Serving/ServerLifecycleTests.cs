using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Discovery.Memory;
using RequestMigration.Serving;
using RequestMigration.Tests.BadInput;
using RequestMigration.Tests.Infrastructure;
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

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task StopAsync_while_the_start_writes_the_record_leaves_nothing_registered_and_nothing_listening(TransportKind transport)
    {
        SkipWithoutQuic(transport);
        var gated = new GatedStore(_store) { HoldPuts = true };
        var server = Server(transport, store: gated);

        var start = server.StartAsync(Ct);
        await gated.PutEntered.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        var address = server.Address;
        var stop = server.StopAsync(Ct);
        await Task.Delay(50, Ct);
        stop.IsCompleted.ShouldBeFalse("StopAsync waits for the interrupted start to undo itself");
        gated.Release();

        await Should.ThrowAsync<OperationCanceledException>(() => start.WaitAsync(TimeSpan.FromSeconds(10), Ct));
        await stop.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        (await Registered()).ShouldBeEmpty("the record written by the interrupted start is removed with its lease");
        await ShouldNotListenAsync(transport, address);
    }

    [Fact]
    public async Task StopAsync_while_the_start_waits_for_a_lease_leaves_nothing_registered_and_nothing_listening()
    {
        var gated = new GatedStore(_store) { HoldGrants = true };
        var server = Server(TransportKind.Tcp, store: gated);

        var start = server.StartAsync(Ct);
        await gated.GrantEntered.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        var address = server.Address;
        var stop = server.StopAsync(Ct);
        gated.Release();

        await Should.ThrowAsync<OperationCanceledException>(() => start.WaitAsync(TimeSpan.FromSeconds(10), Ct));
        await stop.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        (await Registered()).ShouldBeEmpty();
        (await _store.ListAsync(string.Empty, Ct)).ShouldBeEmpty("the lease granted after the stop is revoked");
        await ShouldNotListenAsync(TransportKind.Tcp, address);
    }

    [Fact]
    public async Task Stops_racing_starts_at_random_moments_never_leave_an_instance_registered()
    {
        var random = new Random(8);
        for (var i = 0; i < 25; i++)
        {
            var server = Server(TransportKind.Tcp);
            var start = server.StartAsync(Ct);
            if (random.Next(3) > 0)
            {
                await Task.Delay(random.Next(0, 4), Ct);
            }

            await server.StopAsync(Ct).WaitAsync(TimeSpan.FromSeconds(10), Ct);
            try
            {
                await start.WaitAsync(TimeSpan.FromSeconds(10), Ct);
            }
            catch (OperationCanceledException)
            {
                // The stop came first: the start undid itself.
            }

            (await _store.ListAsync(string.Empty, Ct)).ShouldBeEmpty($"round {i}");
        }
    }

    [Theory]
    [MemberData(nameof(Transports))]
    public async Task An_accept_loop_that_dies_is_logged_with_its_cause_and_the_instance_deregisters(TransportKind transport)
    {
        SkipWithoutQuic(transport);
        var logs = new CapturedLogs();
        var server = Server(transport, logs: logs);
        await server.StartAsync(Ct);
        (await Registered()).Count.ShouldBe(1);

        // The listener fails under the server (not stopped by it): its socket is gone.
        var listener = server.Listeners.Single();
        if (listener is RequestMigration.Transport.Tcp.TcpTransportListener tcp)
        {
            tcp.Socket.Dispose();
        }
        else
        {
            await listener.DisposeAsync();
        }

        await server.Completion.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        (await Registered()).ShouldBeEmpty("an instance that cannot accept connections must not stay registered");
        var line = logs.Entries.SingleOrDefault(e => e.Message.Contains("stopped accepting", StringComparison.Ordinal));
        line.Message.ShouldNotBeNull(logs.Dump());
        line.Level.ShouldBe(LogLevel.Error);
        line.Message.ShouldContain(server.InstanceId.ToString("x"));
        line.Message.ShouldContain("deregistering", customMessage: line.Message);

        // Why it died: the listener's exception goes with the line, and its message is in the text.
        line.Exception.ShouldNotBeNull(line.Message);
        line.Message.ShouldContain($"({line.Exception.Message})", customMessage: line.Message);
    }

    private static async Task ShouldNotListenAsync(TransportKind transport, string address)
    {
        if (string.IsNullOrEmpty(address))
        {
            return;
        }

        var (host, port) = RequestMigration.Transport.Addresses.Split(address);
        if (transport == TransportKind.Tcp)
        {
            using var probe = new TcpClient();
            await Should.ThrowAsync<SocketException>(() => probe.ConnectAsync(host, port, Ct).AsTask());
            return;
        }

        // QUIC: nobody answers the handshake on that UDP port any more, so a connect fails (refused or timed out).
        var runtime = new RequestMigrationRuntime(new RuntimeOptions
        {
            Transport = transport,
            Discovery = new DiscoveryOptions { Store = StoreKind.Mem },
            ConnectTimeout = TimeSpan.FromSeconds(2),
            Tls = { CaCertificateFile = Path.Combine(RawConnection.CertsDir, "ca.pem") },
        });
        await using (runtime)
        {
            var connector = runtime.Transports.ConnectorFor(TransportKinds.Quic);
            var failure = await Record.ExceptionAsync(async () => await (await connector.OpenAsync(address, Ct)).DisposeAsync());
            (failure is IOException or SocketException).ShouldBeTrue($"a QUIC connect to {address} after the stop should fail (refused or timed out), got {failure?.ToString() ?? "a connection"}");
        }
    }

    private static void SkipWithoutQuic(TransportKind transport) =>
        Assert.SkipWhen(transport == TransportKind.Quic && !TransportKinds.IsQuicSupported, "QUIC skipped: libmsquic 2.2+ is not installed here; the TCP case runs.");

    private async Task<IReadOnlyList<InstanceRecord>> Registered() =>
        await new InstanceRegistry(_store).ListAsync(Endpoint, Ct);

    private EndpointServer Server(TransportKind transport, Action<RuntimeOptions>? configure = null, IKeyValueStore? store = null, CapturedLogs? logs = null)
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
        var loggerFactory = logs is null ? null : LoggerFactory.Create(b => b.AddProvider(logs).SetMinimumLevel(LogLevel.Debug));
        var runtime = new RequestMigrationRuntime(options, loggerFactory, store: store ?? _store);
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
