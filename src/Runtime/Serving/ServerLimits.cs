namespace RequestMigration.Serving;

/// <summary>
/// What one endpoint server accepts from its peers (<see cref="RuntimeOptions.Limits"/>), in the manner of
/// Kestrel's <c>KestrelServerLimits</c>: one property per limit, each with a default a production server can
/// ship, where it comes from, its environment variable, and what <see langword="null"/> or zero means.
/// </summary>
/// <remarks>
/// A request over a stream limit gets an "unavailable" error frame before anything
/// else, which routers treat as "go elsewhere" without counting an attempt, so with other instances available
/// consumers do not notice. A TCP connection over <see cref="MaxConcurrentConnections"/> is closed before its
/// TLS handshake, which routers also retry elsewhere; a QUIC one has each of its requests refused that way and
/// is then closed. Every refusal is counted (<c>rm.server.limited</c>, tagged with the limit) and logged as a
/// warning at most once per peer address and limit every <see cref="RejectionLogInterval"/>. Other streams are
/// not affected.
/// </remarks>
public sealed class ServerLimits
{
    /// <summary>
    /// Most connections the server holds at once, TCP and QUIC together, counting TCP connections from accept
    /// (so handshakes in progress count) and QUIC connections once their handshake completed
    /// (<c>DYN_MAX_CONNECTIONS</c>; 0 = no limit). Default 10,000: each connection holds TLS state and buffers
    /// (tens of KiB), and a process usually gets tens of thousands of file descriptors. Null means no limit.
    /// </summary>
    public long? MaxConcurrentConnections { get; set; } = 10_000;

    /// <summary>
    /// Most requests in progress on the server at once, over every connection (<c>DYN_MAX_STREAMS</c>;
    /// 0 = no limit). Default 10,000, the same order as the connection limit since TCP carries one request per
    /// connection. Null means no limit.
    /// </summary>
    public long? MaxConcurrentStreams { get; set; } = 10_000;

    /// <summary>
    /// Most requests in progress at once on one QUIC connection (<c>DYN_MAX_STREAMS_PER_CONNECTION</c>); a TCP
    /// connection carries one at a time anyway. Default 1,000: Kestrel's HTTP/2 default is 100, but its clients
    /// open more connections when they reach it, while a router keeps one QUIC connection per instance for all
    /// its consumers. QUIC grants the peer a little more stream credit than this, so a request over the limit
    /// is refused with an error rather than left waiting.
    /// </summary>
    public int MaxConcurrentStreamsPerConnection { get; set; } = 1_000;

    /// <summary>
    /// Largest request frame the server accepts (<c>DYN_MAX_REQUEST_FRAME_BYTES</c>); the smaller of this and
    /// <see cref="RuntimeOptions.MaxFrameSize"/> applies. A larger request gets a
    /// "frame too large" error naming both sizes. Default 4 MiB, gRPC's default largest
    /// received message: requests are prompts and parameters, while responses may need the 16 MiB frames.
    /// At least 1 KiB.
    /// </summary>
    public int MaxRequestFrameSize { get; set; } = 4 * 1024 * 1024;

    /// <summary>
    /// Most bytes the server holds, summed over all its connections, for request frames that are still arriving
    /// (<c>DYN_MAX_BUFFERED_BYTES</c>). Without it, peers that each send most of one large frame and stop pin
    /// that much memory per connection. A connection whose incomplete frame would take the total over the limit
    /// gets an "unavailable" error frame (routers try another instance) and is closed.
    /// Frames of up to 16 KiB are not counted: they fit in the read buffer each connection has anyway, so small
    /// requests are served even while the limit is reached. Default 64 MiB; zero disables the limit; otherwise at
    /// least the largest request frame, so it can arrive.
    /// </summary>
    public long MaxBufferedRequestBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>
    /// How long one write of response data to a consumer may take (<c>DYN_WRITE_TIMEOUT_SECS</c>; 0 = none). A
    /// consumer that stops reading fills the transport's buffers and then blocks the handler's next write; after
    /// this long the request is cancelled (the handler's token fires), the stream is reset and the peer logged.
    /// A write only waits once the transport's buffers (hundreds of KiB) are full, and writes are at most 32 KiB
    /// of items (or one larger item), so in effect a consumer must keep reading at about 1 KiB/s while the server
    /// has data for it. Default 30 s: a consumer that reads nothing for half a minute has stopped, not slowed (a
    /// garbage collection or a congested link stalls reads for seconds). Stricter than Kestrel's minimum response
    /// rate (240 bytes/s), which protects browsers on poor links; consumers here are routers. Null means no
    /// timeout.
    /// </summary>
    public TimeSpan? WriteTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Time a peer has to complete the TLS handshake (TCP) or QUIC handshake after connecting
    /// (<c>DYN_HANDSHAKE_TIMEOUT_SECS</c>); slower ones are dropped. Default 10 s, as Kestrel's TLS handshake
    /// timeout. Must be positive.
    /// </summary>
    public TimeSpan HandshakeTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long the server keeps a connection (or QUIC stream) on which no request is in progress and no
    /// complete frame arrives (<c>DYN_IDLE_TIMEOUT_SECS</c>). Bounds what an idle or trickling peer can hold.
    /// Default 120 s, as Kestrel's keep-alive timeout; zero disables it. Clients replace pooled connections
    /// closed this way without a failed attempt.
    /// </summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(120);

    /// <summary>
    /// Connections the operating system queues for the server before it accepts them (<c>DYN_LISTEN_BACKLOG</c>;
    /// TCP, and QUIC's queue of connections that finished their handshake). Default 512, as Kestrel's socket
    /// transport. At least 1.
    /// </summary>
    public int ListenBacklog { get; set; } = 512;

    /// <summary>
    /// Refusals over a limit are logged at most once per peer address and limit in this interval; the next line
    /// says how many were not logged. Default 10 s. Must be positive.
    /// </summary>
    public TimeSpan RejectionLogInterval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Applies <c>DYN_MAX_CONNECTIONS</c>, <c>DYN_MAX_STREAMS</c>, <c>DYN_MAX_STREAMS_PER_CONNECTION</c>,
    /// <c>DYN_MAX_REQUEST_FRAME_BYTES</c>, <c>DYN_MAX_BUFFERED_BYTES</c>, <c>DYN_WRITE_TIMEOUT_SECS</c>,
    /// <c>DYN_HANDSHAKE_TIMEOUT_SECS</c>, <c>DYN_IDLE_TIMEOUT_SECS</c> and <c>DYN_LISTEN_BACKLOG</c> from
    /// <paramref name="environment"/> (default: the process environment) over the current values.
    /// </summary>
    /// <exception cref="ArgumentException">A variable holds an invalid value; the message names it.</exception>
    public ServerLimits ApplyEnvironment(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        if (environment("DYN_MAX_CONNECTIONS") is { Length: > 0 } connections)
        {
            MaxConcurrentConnections = ZeroIsUnlimited(EnvironmentValues.ParseLong("DYN_MAX_CONNECTIONS", connections, 0, long.MaxValue));
        }

        if (environment("DYN_MAX_STREAMS") is { Length: > 0 } streams)
        {
            MaxConcurrentStreams = ZeroIsUnlimited(EnvironmentValues.ParseLong("DYN_MAX_STREAMS", streams, 0, long.MaxValue));
        }

        if (environment("DYN_MAX_STREAMS_PER_CONNECTION") is { Length: > 0 } perConnection)
        {
            MaxConcurrentStreamsPerConnection = EnvironmentValues.ParseInt("DYN_MAX_STREAMS_PER_CONNECTION", perConnection, 1, MaxStreamsPerConnectionCeiling);
        }

        if (environment("DYN_MAX_REQUEST_FRAME_BYTES") is { Length: > 0 } frame)
        {
            MaxRequestFrameSize = EnvironmentValues.ParseInt("DYN_MAX_REQUEST_FRAME_BYTES", frame, 1024, int.MaxValue);
        }

        if (environment("DYN_MAX_BUFFERED_BYTES") is { Length: > 0 } buffered)
        {
            MaxBufferedRequestBytes = EnvironmentValues.ParseLong("DYN_MAX_BUFFERED_BYTES", buffered, 0, long.MaxValue);
        }

        if (environment("DYN_WRITE_TIMEOUT_SECS") is { Length: > 0 } write)
        {
            var timeout = EnvironmentValues.ParseSeconds("DYN_WRITE_TIMEOUT_SECS", write);
            WriteTimeout = timeout == TimeSpan.Zero ? null : timeout;
        }

        if (environment("DYN_HANDSHAKE_TIMEOUT_SECS") is { Length: > 0 } handshake)
        {
            HandshakeTimeout = EnvironmentValues.ParseSeconds("DYN_HANDSHAKE_TIMEOUT_SECS", handshake);
        }

        if (environment("DYN_IDLE_TIMEOUT_SECS") is { Length: > 0 } idle)
        {
            IdleTimeout = EnvironmentValues.ParseSeconds("DYN_IDLE_TIMEOUT_SECS", idle);
        }

        if (environment("DYN_LISTEN_BACKLOG") is { Length: > 0 } backlog)
        {
            ListenBacklog = EnvironmentValues.ParseInt("DYN_LISTEN_BACKLOG", backlog, 1, int.MaxValue);
        }

        return this;
    }

    /// <summary>
    /// Checks every limit and reports all that are out of range at once, each naming the property and its
    /// environment variable.
    /// </summary>
    /// <param name="maxFrameSize"><see cref="RuntimeOptions.MaxFrameSize"/>, which caps the request frame size too.</param>
    /// <exception cref="ArgumentException">One or more limits are out of range.</exception>
    internal void Validate(int maxFrameSize)
    {
        var errors = new List<string>();
        if (MaxConcurrentConnections is < 1)
        {
            errors.Add($"MaxConcurrentConnections (DYN_MAX_CONNECTIONS) must be at least 1 or null for no limit, not {MaxConcurrentConnections}");
        }

        if (MaxConcurrentStreams is < 1)
        {
            errors.Add($"MaxConcurrentStreams (DYN_MAX_STREAMS) must be at least 1 or null for no limit, not {MaxConcurrentStreams}");
        }

        if (MaxConcurrentStreamsPerConnection is < 1 or > MaxStreamsPerConnectionCeiling)
        {
            errors.Add($"MaxConcurrentStreamsPerConnection (DYN_MAX_STREAMS_PER_CONNECTION) must be 1..{MaxStreamsPerConnectionCeiling}, not {MaxConcurrentStreamsPerConnection}");
        }

        if (MaxRequestFrameSize < 1024)
        {
            errors.Add($"MaxRequestFrameSize (DYN_MAX_REQUEST_FRAME_BYTES) must be at least 1024 bytes, not {MaxRequestFrameSize}");
        }

        var largestRequest = Math.Min(MaxRequestFrameSize, maxFrameSize);
        if (MaxBufferedRequestBytes < 0 || (MaxBufferedRequestBytes > 0 && MaxBufferedRequestBytes < largestRequest))
        {
            errors.Add($"MaxBufferedRequestBytes (DYN_MAX_BUFFERED_BYTES) must be 0 (no limit) or at least the largest request frame ({largestRequest} bytes: MaxRequestFrameSize, capped by MaxFrameSize), or that frame could never arrive; not {MaxBufferedRequestBytes}");
        }

        if (WriteTimeout is { } write && write <= TimeSpan.Zero)
        {
            errors.Add($"WriteTimeout (DYN_WRITE_TIMEOUT_SECS) must be positive or null for none, not {write}");
        }

        if (HandshakeTimeout <= TimeSpan.Zero)
        {
            errors.Add($"HandshakeTimeout (DYN_HANDSHAKE_TIMEOUT_SECS) must be positive, not {HandshakeTimeout}");
        }

        if (IdleTimeout < TimeSpan.Zero)
        {
            errors.Add($"IdleTimeout (DYN_IDLE_TIMEOUT_SECS) must not be negative, not {IdleTimeout}");
        }

        if (ListenBacklog < 1)
        {
            errors.Add($"ListenBacklog (DYN_LISTEN_BACKLOG) must be at least 1, not {ListenBacklog}");
        }

        if (RejectionLogInterval <= TimeSpan.Zero)
        {
            errors.Add($"RejectionLogInterval must be positive, not {RejectionLogInterval}");
        }

        if (errors.Count > 0)
        {
            throw new ArgumentException($"invalid server limit{(errors.Count > 1 ? "s" : string.Empty)} (RuntimeOptions.Limits): {string.Join("; ", errors)}", nameof(RuntimeOptions.Limits));
        }
    }

    /// <summary>The largest request frame this server reads: <see cref="MaxRequestFrameSize"/> capped by <paramref name="maxFrameSize"/>.</summary>
    internal int EffectiveRequestFrameSize(int maxFrameSize) => Math.Min(MaxRequestFrameSize, maxFrameSize);

    /// <summary>
    /// QUIC stream credit granted to each peer: the per-connection limit plus room for requests that are refused,
    /// so a peer over the limit gets its error frame instead of waiting for credit.
    /// </summary>
    internal int QuicStreamCredit => (int)Math.Min(MaxStreamsPerConnectionCeiling + QuicRefusalHeadroom, (long)MaxConcurrentStreamsPerConnection + QuicRefusalHeadroom);

    // QUIC stream credit is a 16-bit-friendly count in msquic; keep the limit well inside it.
    private const int MaxStreamsPerConnectionCeiling = 60_000;

    private const int QuicRefusalHeadroom = 100;

    private static long? ZeroIsUnlimited(long value) => value == 0 ? null : value;
}
