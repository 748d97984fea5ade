using System.Net;
using System.Runtime.Versioning;
using RequestMigration.Wire;

namespace RequestMigration.Transport;

/// <summary>Which transport an instance serves on (<c>DYN_TRANSPORT</c>).</summary>
public enum TransportKind
{
    /// <summary>QUIC when <c>System.Net.Quic</c> is supported here (libmsquic present), otherwise TCP with a warning.</summary>
    Auto,

    /// <summary>QUIC only: one connection per peer, one stream per request. Fails at start-up without libmsquic.</summary>
    Quic,

    /// <summary>TCP + TLS: request streams multiplexed over a few pooled connections per instance (ALPN <c>rm/2</c>), or one request at a time per connection against servers that speak only <c>rm/1</c>.</summary>
    Tcp,
}

/// <summary>Parsing and names of <see cref="TransportKind"/>.</summary>
public static class TransportKinds
{
    /// <summary>The accepted spellings, as listed in errors.</summary>
    public const string ValidValues = "auto, quic, tcp";

    /// <summary>Record value for QUIC.</summary>
    public const string Quic = "quic";

    /// <summary>Record value for TCP.</summary>
    public const string Tcp = "tcp";

    /// <summary>Parses <c>auto</c>, <c>quic</c> or <c>tcp</c> (case-insensitive, empty = auto).</summary>
    /// <exception cref="ArgumentException">Any other value, naming <paramref name="source"/> and the valid values.</exception>
    public static TransportKind Parse(string? value, string source = "DYN_TRANSPORT") =>
        (value ?? string.Empty).Trim().ToLowerInvariant() switch
        {
            "" or "auto" => TransportKind.Auto,
            "quic" => TransportKind.Quic,
            "tcp" => TransportKind.Tcp,
            _ => throw new ArgumentException($"{source}='{value}' is not a valid transport; valid values: {ValidValues}", source),
        };

    /// <summary>Whether QUIC can be used in this process.</summary>
    [SupportedOSPlatformGuard("linux")]
    [SupportedOSPlatformGuard("windows")]
    [SupportedOSPlatformGuard("osx")]
    public static bool IsQuicSupported =>
        (OperatingSystem.IsLinux() || OperatingSystem.IsWindows() || OperatingSystem.IsMacOS())
        && System.Net.Quic.QuicListener.IsSupported && System.Net.Quic.QuicConnection.IsSupported;

    /// <summary>Why QUIC cannot be used here, and how to fix it (no claim about what happens instead).</summary>
    internal const string QuicUnsupportedReason =
        "System.Net.Quic is not supported in this process (libmsquic 2.2+ not found); "
        + "install libmsquic from packages.microsoft.com (package 'libmsquic') to enable QUIC";

    /// <summary>The text logged when <c>auto</c> falls back to TCP.</summary>
    internal const string QuicUnavailableHint = QuicUnsupportedReason + "; using TCP + TLS";

    /// <summary>Throws when <paramref name="kind"/> is <see cref="TransportKind.Quic"/> and QUIC is not supported here.</summary>
    /// <exception cref="PlatformNotSupportedException">Names the setting and says how to get QUIC, or to use <c>tcp</c> / <c>auto</c>.</exception>
    public static void EnsureSupported(TransportKind kind)
    {
        if (kind == TransportKind.Quic && !IsQuicSupported)
        {
            throw new PlatformNotSupportedException($"DYN_TRANSPORT=quic, but {QuicUnsupportedReason} (or set DYN_TRANSPORT=auto or tcp)");
        }
    }
}

/// <summary>Timers of QUIC connections (both ends).</summary>
/// <param name="IdleTimeout">A connection with no packets for this long is closed (a dead peer's streams then fail).</param>
/// <param name="KeepAliveInterval">How often an otherwise quiet connection sends a keep-alive.</param>
internal readonly record struct QuicConnectionSettings(TimeSpan IdleTimeout, TimeSpan KeepAliveInterval);

/// <summary>Accepts connections for one endpoint server.</summary>
internal interface ITransportListener : IAsyncDisposable
{
    IPEndPoint LocalEndPoint { get; }

    /// <summary>Next connection that completed its handshake; throws once the listener is disposed or cancelled.</summary>
    ValueTask<IServerConnection> AcceptAsync(CancellationToken cancellationToken);
}

/// <summary>A server-side connection.</summary>
internal interface IServerConnection : IAsyncDisposable
{
    string Id { get; }

    string Remote { get; }

    /// <summary>QUIC: one stream per request, many at once. TCP: one stream carrying requests one after another.</summary>
    bool IsMultiplexed { get; }

    /// <summary>Next request stream; null when the connection is finished.</summary>
    ValueTask<Stream?> AcceptStreamAsync(CancellationToken cancellationToken);

    /// <summary>Resets a stream without an end frame (the peer sees a broken stream; unsent data may be lost).</summary>
    void Abort(Stream stream);

    /// <summary>
    /// Ends a response without an end frame, as a crash right after the last write would: everything written
    /// so far is delivered first (QUIC: FIN, not RESET_STREAM), then the peer sees the stream end early.
    /// </summary>
    void Cut(Stream stream);

    /// <summary>The response on this stream is complete (QUIC: close our write side; TCP: nothing).</summary>
    void Complete(Stream stream);

    /// <summary>Writes the last bytes of a response and completes it (<see cref="Complete"/>).</summary>
    async ValueTask WriteLastAsync(Stream stream, ReadOnlyMemory<byte> last, CancellationToken cancellationToken)
    {
        await stream.WriteAsync(last, cancellationToken).ConfigureAwait(false);
        await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
        Complete(stream);
    }

    /// <summary>The server is draining: tell the peer to open no new streams here (multiplexed TCP: GOAWAY). Open streams carry on.</summary>
    void StopAcceptingStreams()
    {
    }
}

/// <summary>Opens request streams to instances; pools connections.</summary>
internal interface IClientConnector : IAsyncDisposable
{
    string Name { get; }

    ValueTask<ClientStream> OpenAsync(string address, CancellationToken cancellationToken);

    /// <summary>Drops what is pooled for <paramref name="address"/>: idle connections close now, busy ones when their requests end.</summary>
    void Forget(string address);
}

/// <summary>When client connectors look at their idle connections.</summary>
internal static class ConnectionSweep
{
    /// <summary>
    /// How often idle connections are checked: often enough that one the server closed is closed here within
    /// a second (not left in CLOSE_WAIT), and cheap (one poll per idle connection).
    /// </summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(1);
}

/// <summary>A client-side request stream with its frame reader and writer.</summary>
internal abstract class ClientStream : IAsyncDisposable
{
    private bool _done;

    public abstract string ConnectionId { get; }

    /// <summary>Taken from a connection pool (it may have been closed by the server while idle).</summary>
    public bool Reused { get; init; }

    public abstract FrameReader Reader { get; }

    public abstract FrameWriter Writer { get; }

    /// <summary>The response ended cleanly: the connection may carry the next request.</summary>
    public async ValueTask ReleaseAsync()
    {
        if (!_done)
        {
            _done = true;
            await OnReleaseAsync().ConfigureAwait(false);
        }
    }

    /// <summary>The request was abandoned or failed: the peer must see the stream end now.</summary>
    public async ValueTask DisposeAsync()
    {
        if (!_done)
        {
            _done = true;
            await OnAbortAsync().ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Breaks the stream under a pending read, from another task (heartbeat failure): the read fails or sees
    /// the end of the stream at once. The stream must still be disposed.
    /// </summary>
    public abstract void Interrupt();

    protected abstract ValueTask OnReleaseAsync();

    protected abstract ValueTask OnAbortAsync();
}

/// <summary>Parses <c>host:port</c> addresses from instance records.</summary>
internal static class Addresses
{
    public static (string Host, int Port) Split(string address)
    {
        var colon = address.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(address.AsSpan(colon + 1), out var port) || port is <= 0 or > 65535)
        {
            throw new FormatException($"address '{address}' is not host:port");
        }

        var host = address[..colon].Trim('[', ']');
        return (host, port);
    }

    public static async ValueTask<IPEndPoint> ResolveAsync(string address, CancellationToken cancellationToken)
    {
        var (host, port) = Split(address);
        if (IPAddress.TryParse(host, out var ip))
        {
            return new IPEndPoint(ip, port);
        }

        var ips = await Dns.GetHostAddressesAsync(host, cancellationToken).ConfigureAwait(false);
        return ips.Length == 0 ? throw new IOException($"cannot resolve '{host}'") : new IPEndPoint(ips[0], port);
    }

    public static string Format(IPEndPoint ep) =>
        ep.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{ep.Address}]:{ep.Port}" : $"{ep.Address}:{ep.Port}";
}
