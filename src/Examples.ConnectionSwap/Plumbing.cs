using System.Net.Quic;
using System.Net.Sockets;
using RequestMigration;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Transport;

namespace Examples.ConnectionSwap;

/// <summary>Runtime options, server start-up and small calls shared by the three roles.</summary>
internal static class Plumbing
{
    /// <summary>
    /// Runtime options from the <c>DYN_*</c> variables, listening on <paramref name="listen"/> when given. Each
    /// port of a process is its own runtime (a runtime listens on one port).
    /// </summary>
    /// <exception cref="ConfigurationException">A <c>DYN_*</c> variable is invalid.</exception>
    public static RuntimeOptions Options(HostPort? listen = null)
    {
        try
        {
            var options = new RuntimeOptions().ApplyEnvironment();

            // Token streams never end by themselves, so draining them only delays a stop: they are cut after a
            // second and continue elsewhere (migration), unless DYN_DRAIN_TIMEOUT_SECS says otherwise.
            if (Environment.GetEnvironmentVariable("DYN_DRAIN_TIMEOUT_SECS") is not { Length: > 0 })
            {
                options.DrainTimeout = TimeSpan.FromSeconds(1);
            }

            if (listen is { } l)
            {
                options.ListenHost = l.Host;
                options.ListenPort = l.Port;
            }

            options.Validate();
            TransportKinds.EnsureSupported(options.Transport);
            return options;
        }
        catch (Exception ex) when (ex is ArgumentException or PlatformNotSupportedException)
        {
            throw new ConfigurationException(ex.Message);
        }
    }

    /// <summary>Router options from the <c>DYN_*</c> router variables (heartbeats on by default), for the example to complete.</summary>
    /// <exception cref="ConfigurationException">A <c>DYN_*</c> variable is invalid.</exception>
    public static RouterOptions RouterOptions(bool heartbeats)
    {
        try
        {
            var options = new RouterOptions { Heartbeat = heartbeats ? new RequestMigration.Health.HeartbeatOptions() : null }.ApplyEnvironment();
            options.Validate();
            return options;
        }
        catch (ArgumentException ex)
        {
            throw new ConfigurationException(ex.Message);
        }
    }

    /// <summary>Starts a server, turning "address in use" into a line that names the port and the variable to change.</summary>
    /// <exception cref="ConfigurationException">The port is taken.</exception>
    public static async Task StartAsync(EndpointServer server, HostPort address, string variable, CancellationToken cancellationToken)
    {
        try
        {
            await server.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (IsAddressInUse(ex))
        {
            throw new ConfigurationException($"cannot listen on {address}: port {address.Port} is already in use; stop what uses it or set {variable} to another address (port 0 picks a free one)");
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.AddressNotAvailable)
        {
            throw new ConfigurationException($"cannot listen on {address}: {address.Host} is not an address of this machine; set {variable} to one that is (e.g. 127.0.0.1:{address.Port})");
        }
    }

    private static bool IsAddressInUse(Exception? ex)
    {
        for (; ex is not null; ex = ex.InnerException)
        {
            if (ex is SocketException { SocketErrorCode: SocketError.AddressAlreadyInUse } || (ex is QuicException && ex.Message.Contains("in use", StringComparison.OrdinalIgnoreCase)))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Writes records for fixed addresses into <paramref name="store"/> (a process-private memory store), so a
    /// router can reach a peer we were given an address for, not one discovery told us about. The instance id
    /// is derived from the address, so it is the same in every process.
    /// </summary>
    public static async Task<IReadOnlyList<InstanceRecord>> PublishStaticAsync(IKeyValueStore store, EndpointId endpoint, IReadOnlyList<HostPort> addresses, string role, RuntimeOptions options, CancellationToken cancellationToken)
    {
        // A server in auto mode also listens on TCP on the same port, so TCP reaches it whatever it prefers; a
        // quic-only deployment says so on both sides.
        var transport = options.Transport == TransportKind.Quic ? TransportKinds.Quic : TransportKinds.Tcp;
        var records = new List<InstanceRecord>();
        foreach (var address in addresses.Distinct())
        {
            var record = new InstanceRecord
            {
                InstanceId = StaticId(address.ToString()),
                Namespace = endpoint.Namespace,
                Component = endpoint.Component,
                Endpoint = endpoint.Endpoint,
                Transport = transport,
                Address = address.ToString(),
                Tags = Tags.For(role, address.ToString()),
            };
            await store.PutInstanceAsync(record, cancellationToken: cancellationToken).ConfigureAwait(false);
            records.Add(record);
        }

        return records;
    }

    private static ulong StaticId(string address)
    {
        // FNV-1a: stable across processes and runs, unlike string.GetHashCode.
        var hash = 14695981039346656037UL;
        foreach (var c in address)
        {
            hash = (hash ^ c) * 1099511628211UL;
        }

        return Math.Max(1, hash);
    }

    /// <summary>The single item of a one-item response (registration, assignment, health).</summary>
    /// <exception cref="RoutingException">The call failed or returned no item.</exception>
    public static async Task<T> SingleAsync<T>(IAsyncEnumerable<Annotated<T>> call)
    {
        await foreach (var item in call.ConfigureAwait(false))
        {
            if (item.IsError)
            {
                // Only routers without migration show failed attempts; a later attempt may still answer.
                continue;
            }

            return item.Data!;
        }

        throw new EndpointFailedException("the response was empty");
    }

    /// <summary>Rejects a token request that cannot be served (not retried: every instance would refuse it).</summary>
    /// <exception cref="EndpointErrorException">A negative start or total, or a start beyond the total.</exception>
    public static void Validate(GenerateRequest request)
    {
        if (request.StartAfter < 0 || request.Total < 0 || (request.Total > 0 && request.StartAfter > request.Total))
        {
            throw new EndpointErrorException($"bad request: startAfter={request.StartAfter} and total={request.Total} must be 0 or more, and startAfter at most total (0 = no end)");
        }
    }

    /// <summary>Text a peer sent goes into logs: one short line, no control characters.</summary>
    public static string Sanitize(string? text) =>
        string.IsNullOrEmpty(text) ? "-" : new string([.. text.Take(200).Select(c => char.IsControl(c) ? '?' : c)]);

    /// <summary>Waits until a router has seen discovery's first snapshot, or <paramref name="timeout"/> passed.</summary>
    public static async Task WaitSyncedAsync<TReq, TResp>(PushRouter<TReq, TResp> router, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            await router.Instances.Synced.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // The store is slow or down; calls report that as "no instance" and are retried.
        }
    }
}

/// <summary>Exponential backoff with jitter, for retry loops that must not hammer a peer that is down.</summary>
internal sealed class Backoff(TimeSpan first, TimeSpan max)
{
    private readonly TimeSpan _first = first;
    private TimeSpan _next = first;

    public TimeSpan Next()
    {
        var d = _next;
        _next = TimeSpan.FromTicks(Math.Min(max.Ticks, _next.Ticks * 2));
        return d * (0.8 + (Random.Shared.NextDouble() * 0.4));
    }

    public void Reset() => _next = _first;
}
