using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace RequestMigration.Transport.Tls;

/// <summary>Loaded certificates and the TLS options built from them, shared by QUIC and TCP.</summary>
internal sealed class TlsConfiguration : IDisposable
{
    /// <summary>Our ALPN: peers that speak anything else are refused during the handshake.</summary>
    public static readonly SslApplicationProtocol Alpn = new("rm/1");

    private readonly X509Certificate2 _ca;
    private X509Certificate2? _serverCert;
    private SslStreamCertificateContext? _serverContext;
    private readonly TlsOptions _options;

    public TlsConfiguration(TlsOptions options)
    {
        _options = options;
        var caPath = TlsOptions.Resolve(options.CaCertificateFile, "CA certificate (DYN_TLS_CA_FILE)");
        try
        {
            _ca = X509Certificate2.CreateFromPem(System.IO.File.ReadAllText(caPath));
        }
        catch (CryptographicException ex)
        {
            throw new ArgumentException($"CA certificate (DYN_TLS_CA_FILE) '{caPath}' is not a PEM certificate: {ex.Message}", nameof(options), ex);
        }
    }

    public bool SkipValidation => _options.SkipServerCertificateValidation;

    public SslServerAuthenticationOptions ServerOptions()
    {
        if (_serverContext is null)
        {
            var certPath = TlsOptions.Resolve(_options.CertificateFile, "server certificate (DYN_TLS_CERT_FILE)");
            var keyPath = TlsOptions.Resolve(_options.PrivateKeyFile, "server key (DYN_TLS_KEY_FILE)");
            X509Certificate2 cert;
            try
            {
                cert = X509Certificate2.CreateFromPemFile(certPath, keyPath);
            }
            catch (CryptographicException ex)
            {
                throw new ArgumentException($"server certificate '{certPath}' with key '{keyPath}' cannot be loaded: {ex.Message}", nameof(TlsOptions), ex);
            }

            // Ephemeral PEM keys can't be used by every TLS backend; a PKCS#12 round trip makes them persistent in-process.
            _serverCert = X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null);
            cert.Dispose();
            _serverContext = SslStreamCertificateContext.Create(_serverCert, [_ca], offline: true);
        }

        return new SslServerAuthenticationOptions
        {
            ServerCertificateContext = _serverContext,
            ApplicationProtocols = [Alpn],
            EnabledSslProtocols = SslProtocols.Tls13 | SslProtocols.Tls12,
            ClientCertificateRequired = false,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        };
    }

    public SslClientAuthenticationOptions ClientOptions(string targetHost)
    {
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = targetHost,
            ApplicationProtocols = [Alpn],
            EnabledSslProtocols = SslProtocols.Tls13 | SslProtocols.Tls12,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        };
        if (_options.SkipServerCertificateValidation)
        {
            options.RemoteCertificateValidationCallback = static (_, _, _, _) => true;
        }
        else
        {
            // Trust exactly our CA, not the machine's store; host name checks stay on.
            var policy = new X509ChainPolicy
            {
                TrustMode = X509ChainTrustMode.CustomRootTrust,
                RevocationMode = X509RevocationMode.NoCheck,
            };
            policy.CustomTrustStore.Add(_ca);
            options.CertificateChainPolicy = policy;
        }

        return options;
    }

    public void Dispose()
    {
        _ca.Dispose();
        _serverCert?.Dispose();
    }
}
