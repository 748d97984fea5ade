using System.Net;
using Microsoft.Extensions.Logging;
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

    public TransportFactory(RuntimeOptions options, ILogger logger)
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

            return tls;
        });
        _tcp = new(() => new TcpClientConnector(_tls.Value, options.MaxFrameSize, options.ConnectTimeout));
        _quic = new(() => TransportKinds.IsQuicSupported ? new QuicClientConnector(_tls.Value, options.MaxFrameSize, options.ConnectTimeout) : null);
    }

    /// <summary>The transport servers use after resolving <see cref="TransportKind.Auto"/>.</summary>
    public TransportKind ResolveServerTransport()
    {
        switch (_options.Transport)
        {
            case TransportKind.Tcp:
                return TransportKind.Tcp;
            case TransportKind.Quic when !TransportKinds.IsQuicSupported:
                throw new PlatformNotSupportedException("DYN_TRANSPORT=quic but " + TransportKinds.QuicUnavailableHint);
            case TransportKind.Quic:
                return TransportKind.Quic;
            default:
                if (TransportKinds.IsQuicSupported)
                {
                    return TransportKind.Quic;
                }

                LogQuicUnavailable(TransportKinds.QuicUnavailableHint);
                return TransportKind.Tcp;
        }
    }

    public async ValueTask<ITransportListener> ListenAsync(TransportKind kind, IPEndPoint endpoint, CancellationToken cancellationToken)
    {
        if (kind == TransportKind.Quic && TransportKinds.IsQuicSupported)
        {
            return await QuicTransportListener.StartAsync(endpoint, _tls.Value, _logger, cancellationToken).ConfigureAwait(false);
        }

        return new TcpTransportListener(endpoint, _tls.Value, _logger);
    }

    /// <summary>The connector for an instance's advertised transport.</summary>
    /// <exception cref="IOException">The instance uses a transport this process cannot speak.</exception>
    public IClientConnector ConnectorFor(string transport) => transport switch
    {
        TransportKinds.Tcp => _tcp.Value,
        TransportKinds.Quic => _quic.Value ?? throw new IOException("instance serves over quic, but " + TransportKinds.QuicUnavailableHint),
        _ => throw new IOException($"instance advertises unknown transport '{transport}'; valid: {TransportKinds.Quic}, {TransportKinds.Tcp}"),
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

    [LoggerMessage(Level = LogLevel.Warning, Message = "transport: server certificate validation is OFF (DYN_TLS_INSECURE); any server can impersonate an instance")]
    private partial void LogInsecure();
}
