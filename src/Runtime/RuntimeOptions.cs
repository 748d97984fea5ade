using System.Globalization;
using System.Net;
using RequestMigration.Discovery;
using RequestMigration.Serving;
using RequestMigration.Transport;
using RequestMigration.Transport.Tls;

namespace RequestMigration;

/// <summary>
/// Settings of a <see cref="RequestMigrationRuntime"/>: discovery store, transport, TLS, limits. Bind from the
/// <c>RequestMigration</c> configuration section and/or apply the <c>DYN_*</c> environment variables with
/// <see cref="ApplyEnvironment"/>; <see cref="Validate"/> runs before anything starts.
/// </summary>
public sealed class RuntimeOptions
{
    /// <summary>Configuration section name used by the hosting extensions.</summary>
    public const string SectionName = "RequestMigration";

    /// <summary>Discovery store settings (<c>DYN_STORE_KV</c>, <c>DYN_FILE_KV</c>, <c>ETCD_ENDPOINTS</c>).</summary>
    public DiscoveryOptions Discovery { get; set; } = new();

    /// <summary>Transport servers listen on (<c>DYN_TRANSPORT</c>): auto (default), quic or tcp. Clients use whatever each instance advertises.</summary>
    public TransportKind Transport { get; set; } = TransportKind.Auto;

    /// <summary>Certificates (<c>DYN_TLS_CA_FILE</c>, <c>DYN_TLS_CERT_FILE</c>, <c>DYN_TLS_KEY_FILE</c>, <c>DYN_TLS_INSECURE</c>).</summary>
    public TlsOptions Tls { get; set; } = new();

    /// <summary>IP address servers listen on (<c>DYN_LISTEN_HOST</c>). Default 127.0.0.1.</summary>
    public string ListenHost { get; set; } = "127.0.0.1";

    /// <summary>Port servers listen on (<c>DYN_LISTEN_PORT</c>); 0 (default) picks a free one.</summary>
    public int ListenPort { get; set; }

    /// <summary>Host written into discovery records (<c>DYN_ADVERTISE_HOST</c>); default: the listen host.</summary>
    public string? AdvertiseHost { get; set; }

    /// <summary>Largest frame accepted or sent (<c>DYN_MAX_FRAME_BYTES</c>). Default 16 MiB.</summary>
    public int MaxFrameSize { get; set; } = 16 * 1024 * 1024;

    /// <summary>
    /// What a server accepts from its peers: connections, concurrent requests, request frame size, buffered
    /// bytes, write, handshake and idle timeouts (<c>DYN_MAX_CONNECTIONS</c>, <c>DYN_MAX_STREAMS</c>, ...; see
    /// <see cref="ServerLimits"/>).
    /// </summary>
    public ServerLimits Limits { get; set; } = new();

    /// <summary>
    /// Clients close a pooled connection (TCP) or a connection (QUIC) that carried no request for this long
    /// (<c>DYN_POOL_IDLE_TIMEOUT_SECS</c>). Default 60 s, as .NET's <c>SocketsHttpHandler.PooledConnectionIdleTimeout</c>,
    /// and shorter than the servers' idle timeout (120 s), so clients close first. Pools are swept every second,
    /// which also closes at once the connections a server has closed (restart, idle timeout) instead of leaving
    /// them in CLOSE_WAIT until a request stumbles on them. Must be positive.
    /// </summary>
    public TimeSpan PooledConnectionIdleTimeout { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Time allowed to connect and finish a TLS handshake. Default 5 s.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How long a stopping server lets in-flight streams finish (<c>DYN_DRAIN_TIMEOUT_SECS</c>). Default 10 s.</summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a stopping server keeps serving as usual after it deregistered, before it stops accepting
    /// (<c>DYN_DEREGISTRATION_GRACE_SECS</c>): routers learn of the deregistration through their discovery
    /// watch, and until then they may still send requests, which are served instead of refused. Default 2 s,
    /// covering etcd's watch (milliseconds) and the file store's rescan (1 s) with room to spare; zero stops
    /// accepting right after deregistering (routers then retry refused requests elsewhere, also unnoticed, but
    /// with a round trip more).
    /// </summary>
    public TimeSpan DeregistrationGracePeriod { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// QUIC: a connection with no packets from the peer for this long is closed, failing its streams, so a peer
    /// that vanished without closing (kill -9, lost host) is noticed within about this time
    /// (<c>DYN_QUIC_IDLE_TIMEOUT_SECS</c>). Default 30 s; at least 1 s. Keep-alives (see
    /// <see cref="QuicKeepAliveInterval"/>) keep a quiet but live connection open.
    /// </summary>
    public TimeSpan QuicIdleTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// QUIC: how often a quiet connection sends a keep-alive (<c>DYN_QUIC_KEEPALIVE_SECS</c>). Default (null):
    /// a third of <see cref="QuicIdleTimeout"/>, so two keep-alives may be lost before the connection is.
    /// Must be shorter than the idle timeout.
    /// </summary>
    public TimeSpan? QuicKeepAliveInterval { get; set; }

    internal TimeSpan EffectiveQuicKeepAlive => QuicKeepAliveInterval ?? QuicIdleTimeout / 3;

    /// <summary>
    /// The environment the process runs in (<c>Development</c>, <c>Staging</c>, <c>Production</c>, ...). Null
    /// (default): <c>DOTNET_ENVIRONMENT</c>, else <c>ASPNETCORE_ENVIRONMENT</c>, else <c>Production</c>; the hosting
    /// extensions use the host's environment. Outside <c>Development</c>, loading the development CA that ships in
    /// <c>certs/</c> logs a warning naming the file.
    /// </summary>
    public string? EnvironmentName { get; set; }

    internal string EffectiveEnvironmentName => ResolveEnvironmentName(EnvironmentName, Environment.GetEnvironmentVariable);

    /// <summary>The environment name: the configured one, else the usual variables, else Production (as a host would default).</summary>
    internal static string ResolveEnvironmentName(string? configured, Func<string, string?> environment) =>
        configured is { Length: > 0 } ? configured
        : environment("DOTNET_ENVIRONMENT") is { Length: > 0 } dotnet ? dotnet
        : environment("ASPNETCORE_ENVIRONMENT") is { Length: > 0 } aspnet ? aspnet
        : "Production";

    /// <summary>
    /// TCP: carry many requests over each connection (ALPN <c>rm/2</c>, with per-stream flow control) instead of
    /// one request at a time per connection (<c>DYN_TCP_MULTIPLEX</c>). Default on; servers speak both, and a
    /// client falls back to one request per connection by itself when a server speaks only the older protocol.
    /// </summary>
    public bool TcpMultiplexing { get; set; } = true;

    /// <summary>
    /// TCP with multiplexing: the most connections a client opens to one instance (<c>DYN_MAX_CONNECTIONS_PER_INSTANCE</c>,
    /// 1..64). It starts with one and opens another whenever every connection carries 64 streams or more. Default 4.
    /// </summary>
    public int MaxConnectionsPerInstance { get; set; } = 4;

    /// <summary>Applies the environment variables named on each property over the current values.</summary>
    /// <exception cref="ArgumentException">A variable holds an invalid value; the message names it.</exception>
    public RuntimeOptions ApplyEnvironment(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        Discovery.ApplyEnvironment(environment);
        if (environment("DYN_TRANSPORT") is { } transport)
        {
            Transport = TransportKinds.Parse(transport);
        }

        Tls.CaCertificateFile = environment("DYN_TLS_CA_FILE") is { Length: > 0 } ca ? ca : Tls.CaCertificateFile;
        Tls.CertificateFile = environment("DYN_TLS_CERT_FILE") is { Length: > 0 } cert ? cert : Tls.CertificateFile;
        Tls.PrivateKeyFile = environment("DYN_TLS_KEY_FILE") is { Length: > 0 } key ? key : Tls.PrivateKeyFile;
        if (environment("DYN_TLS_INSECURE") is { Length: > 0 } insecure)
        {
            Tls.SkipServerCertificateValidation = EnvironmentValues.ParseBool("DYN_TLS_INSECURE", insecure);
        }

        ListenHost = environment("DYN_LISTEN_HOST") is { Length: > 0 } host ? host : ListenHost;
        if (environment("DYN_LISTEN_PORT") is { Length: > 0 } port)
        {
            ListenPort = EnvironmentValues.ParseInt("DYN_LISTEN_PORT", port, 0, 65535);
        }

        AdvertiseHost = environment("DYN_ADVERTISE_HOST") is { Length: > 0 } adv ? adv : AdvertiseHost;
        if (environment("DYN_MAX_FRAME_BYTES") is { Length: > 0 } max)
        {
            MaxFrameSize = EnvironmentValues.ParseInt("DYN_MAX_FRAME_BYTES", max, 1024, int.MaxValue);
        }

        Limits.ApplyEnvironment(environment);
        if (environment("DYN_DRAIN_TIMEOUT_SECS") is { Length: > 0 } drain)
        {
            DrainTimeout = EnvironmentValues.ParseSeconds("DYN_DRAIN_TIMEOUT_SECS", drain);
        }

        if (environment("DYN_POOL_IDLE_TIMEOUT_SECS") is { Length: > 0 } poolIdle)
        {
            PooledConnectionIdleTimeout = EnvironmentValues.ParseSeconds("DYN_POOL_IDLE_TIMEOUT_SECS", poolIdle);
        }

        if (environment("DYN_DEREGISTRATION_GRACE_SECS") is { Length: > 0 } grace)
        {
            DeregistrationGracePeriod = EnvironmentValues.ParseSeconds("DYN_DEREGISTRATION_GRACE_SECS", grace);
        }

        if (environment("DYN_QUIC_IDLE_TIMEOUT_SECS") is { Length: > 0 } quicIdle)
        {
            QuicIdleTimeout = EnvironmentValues.ParseSeconds("DYN_QUIC_IDLE_TIMEOUT_SECS", quicIdle);
        }

        if (environment("DYN_QUIC_KEEPALIVE_SECS") is { Length: > 0 } quicKeepAlive)
        {
            QuicKeepAliveInterval = EnvironmentValues.ParseSeconds("DYN_QUIC_KEEPALIVE_SECS", quicKeepAlive);
        }

        if (environment("DYN_TCP_MULTIPLEX") is { Length: > 0 } multiplex)
        {
            TcpMultiplexing = EnvironmentValues.ParseBool("DYN_TCP_MULTIPLEX", multiplex);
        }

        if (environment("DYN_MAX_CONNECTIONS_PER_INSTANCE") is { Length: > 0 } perInstance)
        {
            MaxConnectionsPerInstance = EnvironmentValues.ParseInt("DYN_MAX_CONNECTIONS_PER_INSTANCE", perInstance, 1, 64);
        }

        return this;
    }

    /// <summary>Checks every value up front, naming the first bad one.</summary>
    public void Validate()
    {
        Discovery.Validate();
        if (!IPAddress.TryParse(ListenHost, out _))
        {
            throw new ArgumentException($"ListenHost (DYN_LISTEN_HOST) '{ListenHost}' is not an IP address", nameof(ListenHost));
        }

        if (ListenPort is < 0 or > 65535)
        {
            throw new ArgumentOutOfRangeException(nameof(ListenPort), ListenPort, "must be 0..65535");
        }

        if (MaxFrameSize < 1024)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxFrameSize), MaxFrameSize, "must be at least 1024 bytes");
        }

        if (ConnectTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(ConnectTimeout), ConnectTimeout, "must be positive");
        }

        if (DrainTimeout < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(DrainTimeout), DrainTimeout, "must not be negative");
        }

        if (PooledConnectionIdleTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(PooledConnectionIdleTimeout), PooledConnectionIdleTimeout, "PooledConnectionIdleTimeout (DYN_POOL_IDLE_TIMEOUT_SECS) must be positive");
        }

        if (DeregistrationGracePeriod < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(DeregistrationGracePeriod), DeregistrationGracePeriod, "DeregistrationGracePeriod (DYN_DEREGISTRATION_GRACE_SECS) must not be negative");
        }

        if (QuicIdleTimeout < TimeSpan.FromSeconds(1))
        {
            throw new ArgumentOutOfRangeException(nameof(QuicIdleTimeout), QuicIdleTimeout, "QuicIdleTimeout (DYN_QUIC_IDLE_TIMEOUT_SECS) must be at least 1 s");
        }

        if (EffectiveQuicKeepAlive <= TimeSpan.Zero || EffectiveQuicKeepAlive >= QuicIdleTimeout)
        {
            throw new ArgumentOutOfRangeException(nameof(QuicKeepAliveInterval), EffectiveQuicKeepAlive, "QuicKeepAliveInterval (DYN_QUIC_KEEPALIVE_SECS) must be positive and shorter than QuicIdleTimeout");
        }

        if (MaxConnectionsPerInstance is < 1 or > 64)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxConnectionsPerInstance), MaxConnectionsPerInstance, "MaxConnectionsPerInstance (DYN_MAX_CONNECTIONS_PER_INSTANCE) must be 1..64");
        }

        ArgumentNullException.ThrowIfNull(Limits, nameof(Limits));
        Limits.Validate(MaxFrameSize);
    }
}

/// <summary>Parses environment values with errors that name the variable.</summary>
internal static class EnvironmentValues
{
    public static bool ParseBool(string name, string value) => value.Trim().ToLowerInvariant() switch
    {
        "1" or "true" or "yes" or "on" => true,
        "0" or "false" or "no" or "off" or "" => false,
        _ => throw new ArgumentException($"{name}='{value}' is not a boolean (true/false/1/0)", name),
    };

    public static int ParseInt(string name, string value, int min, int max) =>
        int.TryParse(value.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
            ? n
            : throw new ArgumentException($"{name}='{value}' is not a whole number between {min} and {max}", name);

    public static long ParseLong(string name, string value, long min, long max) =>
        long.TryParse(value.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
            ? n
            : throw new ArgumentException($"{name}='{value}' is not a whole number between {min} and {max}", name);

    public static TimeSpan ParseSeconds(string name, string value) =>
        double.TryParse(value.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var s) && s >= 0 && s <= 86_400
            ? TimeSpan.FromSeconds(s)
            : throw new ArgumentException($"{name}='{value}' is not a number of seconds between 0 and 86400", name);
}
