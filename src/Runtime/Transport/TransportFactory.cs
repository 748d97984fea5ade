using System.Net;
using Microsoft.Extensions.Logging;
using RequestMigration.Discovery.Instances;
using RequestMigration.Transport.Quic;
using RequestMigration.Transport.Tcp;
using RequestMigration.Transport.Tls;

namespace RequestMigration.Transport;

/// <summary>Creates listeners for the configured transport and client connectors for whichever transport an instance advertises.</summary>
internal sealed partial class TransportFactory : IAsyncDisposable
{
    private readonly RuntimeOptions _options;
    private readonly ILogger _logger;
    private readonly Lazy<TlsConfiguration> _tls;
    private readonly Lazy<IClientConnector> _tcp;
    private readonly Lazy<IClientConnector?> _quic;

    public TransportFactory(RuntimeOptions options, TimeProvider time, ILogger logger)
    {
        _options = options;
        _logger = logger;
        _tls = new(() =>
        {
            var tls = new TlsConfiguration(options.Tls);
            if (tls.SkipValidation)
            {
                LogInsecure();
            }

            var environment = options.EffectiveEnvironmentName;
            if (tls.IsDevelopmentCa && !string.Equals(environment, "Development", StringComparison.OrdinalIgnoreCase))
            {
                LogDevelopmentCa(tls.CaPath, TlsConfiguration.DevCaSubject, environment);
            }

            return tls;
        });
        _tcp = new(() => options.TcpMultiplexing
            ? new MuxClientConnector(_tls.Value, options.MaxFrameSize, options.ConnectTimeout, options.PooledConnectionIdleTimeout, options.MaxConnectionsPerInstance, time, logger)
            : new TcpClientConnector(_tls.Value, options.MaxFrameSize, options.ConnectTimeout, options.PooledConnectionIdleTimeout, time));
        _quic = new(() => TransportKinds.IsQuicSupported ? new QuicClientConnector(_tls.Value, options.MaxFrameSize, options.ConnectTimeout, QuicSettings, options.PooledConnectionIdleTimeout, time) : null);
    }

    /// <summary>Idle timeout and keep-alive of QUIC connections, from the options.</summary>
    public QuicConnectionSettings QuicSettings => new(_options.QuicIdleTimeout, _options.EffectiveQuicKeepAlive);

    /// <summary>
    /// The transports a server listens on, preferred first: <c>tcp</c> → TCP; <c>quic</c> → QUIC (an error
    /// without libmsquic); <c>auto</c> → QUIC and TCP where QUIC is supported (so clients without QUIC can
    /// still reach it), else TCP with one warning.
    /// </summary>
    /// <exception cref="PlatformNotSupportedException"><c>quic</c> was asked for and QUIC is not supported here.</exception>
    public IReadOnlyList<TransportKind> ResolveServerTransports()
    {
        switch (_options.Transport)
        {
            case TransportKind.Tcp:
                return [TransportKind.Tcp];
            case TransportKind.Quic:
                TransportKinds.EnsureSupported(TransportKind.Quic);
                return [TransportKind.Quic];
            default:
                if (TransportKinds.IsQuicSupported)
                {
                    return [TransportKind.Quic, TransportKind.Tcp];
                }

                LogQuicUnavailable(TransportKinds.QuicUnavailableHint);
                return [TransportKind.Tcp];
        }
    }

    /// <summary>Starts listening for <paramref name="kind"/> on <paramref name="endpoint"/>.</summary>
    /// <exception cref="FileNotFoundException">The server certificate or key file is missing (named in the message).</exception>
    /// <exception cref="ArgumentException">The certificate or key cannot be loaded (named in the message).</exception>
    public async ValueTask<ITransportListener> ListenAsync(TransportKind kind, IPEndPoint endpoint, ListenerSettings settings, CancellationToken cancellationToken)
    {
        // Load the certificate and key before the port opens: TCP handshakes happen later, one per peer, where
        // a missing file would only be logged while the instance, already registered, black-holes every request.
        _ = _tls.Value.ServerOptions();
        if (kind == TransportKind.Quic && TransportKinds.IsQuicSupported)
        {
            return await QuicTransportListener.StartAsync(endpoint, _tls.Value, QuicSettings, settings, _logger, cancellationToken).ConfigureAwait(false);
        }

        return new TcpTransportListener(endpoint, _tls.Value, settings, _logger);
    }

    /// <summary>
    /// Loads what every client connection needs (the CA certificate) now, so a local mistake fails where the
    /// router is created, naming the file, instead of being blamed on the first instance contacted.
    /// </summary>
    /// <exception cref="FileNotFoundException">The CA file is missing.</exception>
    /// <exception cref="ArgumentException">The CA file is not a PEM certificate.</exception>
    public void EnsureClientReady() => _ = _tls.Value;

    /// <summary>
    /// The connector and address to reach an instance by: the first of its advertised transports (primary,
    /// then alternates) this process speaks.
    /// </summary>
    /// <exception cref="IOException">The instance serves only transports this process cannot speak (not the instance's failure, but it is unreachable from here).</exception>
    public (IClientConnector Connector, string Address) Select(InstanceRecord record)
    {
        if (TryConnector(record.Transport) is { } primary)
        {
            return (primary, record.Address);
        }

        foreach (var alt in record.Alternates)
        {
            if (TryConnector(alt.Transport) is { } connector)
            {
                return (connector, alt.Address);
            }
        }

        var offered = string.Join(", ", new[] { record.Transport }.Concat(record.Alternates.Select(a => a.Transport)));
        throw new IOException(record.Transport == TransportKinds.Quic || record.Alternates.Any(a => a.Transport == TransportKinds.Quic)
            ? $"instance serves over {offered} only, and {TransportKinds.QuicUnsupportedReason}"
            : $"instance advertises no transport this process speaks ({offered}); valid: {TransportKinds.Quic}, {TransportKinds.Tcp}");
    }

    /// <summary>
    /// Drops what this process pools for an instance that left discovery: idle connections to each of its
    /// addresses are closed now, and busy ones once their requests end. Call it when a router learns that an
    /// instance is gone; a later request to the same address simply connects again.
    /// </summary>
    public void ForgetInstance(InstanceRecord record)
    {
        ArgumentNullException.ThrowIfNull(record);
        foreach (var address in new[] { record.Address }.Concat(record.Alternates.Select(a => a.Address)))
        {
            // Only connectors that exist can hold anything; forgetting must not create them (nor load certificates).
            if (_tcp.IsValueCreated)
            {
                _tcp.Value.Forget(address);
            }

            if (_quic.IsValueCreated)
            {
                _quic.Value?.Forget(address);
            }
        }
    }

    /// <summary>The connector of one transport (benchmarks measure a transport without the router).</summary>
    /// <exception cref="IOException">This process cannot speak <paramref name="transport"/>.</exception>
    public IClientConnector ConnectorFor(string transport) =>
        TryConnector(transport) ?? throw new IOException($"cannot connect over '{transport}': " + (transport == TransportKinds.Quic ? TransportKinds.QuicUnsupportedReason : "unknown transport"));

    private IClientConnector? TryConnector(string transport) => transport switch
    {
        TransportKinds.Tcp => _tcp.Value,
        TransportKinds.Quic => _quic.Value,
        _ => null,
    };

    public async ValueTask DisposeAsync()
    {
        if (_tcp.IsValueCreated)
        {
            await _tcp.Value.DisposeAsync().ConfigureAwait(false);
        }

        if (_quic.IsValueCreated && _quic.Value is { } q)
        {
            await q.DisposeAsync().ConfigureAwait(false);
        }

        if (_tls.IsValueCreated)
        {
            _tls.Value.Dispose();
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "transport: {Hint}")]
    private partial void LogQuicUnavailable(string hint);

    [LoggerMessage(EventId = 300, EventName = "DevelopmentCa", Level = LogLevel.Warning, Message = "transport: using the development CA '{CaPath}' ({Subject}) in environment '{Environment}': its private key is published with RequestMigration, so anyone can issue certificates it trusts; set DYN_TLS_CA_FILE, DYN_TLS_CERT_FILE and DYN_TLS_KEY_FILE to your own")]
    private partial void LogDevelopmentCa(string caPath, string subject, string environment);

    [LoggerMessage(Level = LogLevel.Warning, Message = "transport: server certificate validation is OFF (DYN_TLS_INSECURE); any server can impersonate an instance")]
    private partial void LogInsecure();
}
