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

    /// <summary>ALPN of multiplexed TCP (<see cref="Mux.MuxProtocol"/>); TCP servers offer it before <see cref="Alpn"/>.</summary>
    public static readonly SslApplicationProtocol MuxAlpn = new(Mux.MuxProtocol.Alpn);

    /// <summary>Subject that <c>certs/generate.sh</c> gives the development CA.</summary>
    public const string DevCaSubject = "CN=RequestMigration Dev CA";

    /// <summary>SHA-256 thumbprint of the development CA committed as <c>certs/ca.pem</c>.</summary>
    public const string CommittedDevCaSha256 = "3514962DFD1A9929653B89D08961CE9F1D6589EDD33F8289A1184633D798293B";

    private readonly X509Certificate2 _ca;
    private X509Certificate2? _serverCert;
    private SslStreamCertificateContext? _serverContext;
    private readonly TlsOptions _options;

    public TlsConfiguration(TlsOptions options)
    {
        _options = options;
        var caPath = TlsOptions.Resolve(options.CaCertificateFile, "CA certificate (DYN_TLS_CA_FILE)");
        CaPath = caPath;
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

    /// <summary>Where the CA certificate was loaded from.</summary>
    public string CaPath { get; private set; } = string.Empty;

    /// <summary>
    /// Whether the CA is the development CA committed with this repository (or one made the same way by
    /// <c>certs/generate.sh</c>): its private key is public, so anyone can issue certificates it vouches for.
    /// </summary>
    public bool IsDevelopmentCa =>
        string.Equals(_ca.GetCertHashString(HashAlgorithmName.SHA256), CommittedDevCaSha256, StringComparison.OrdinalIgnoreCase)
        || string.Equals(_ca.Subject, DevCaSubject, StringComparison.Ordinal);

    /// <summary>Server options; <paramref name="protocols"/> are the ALPNs offered, most preferred first (default <c>rm/1</c>).</summary>
    public SslServerAuthenticationOptions ServerOptions(List<SslApplicationProtocol>? protocols = null)
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
            ApplicationProtocols = protocols ?? [Alpn],
            EnabledSslProtocols = SslProtocols.Tls13 | SslProtocols.Tls12,
            ClientCertificateRequired = false,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
        };
    }

    /// <summary>Client options; <paramref name="protocols"/> are the ALPNs asked for (default <c>rm/1</c>).</summary>
    public SslClientAuthenticationOptions ClientOptions(string targetHost, List<SslApplicationProtocol>? protocols = null)
    {
        var options = new SslClientAuthenticationOptions
        {
            TargetHost = targetHost,
            ApplicationProtocols = protocols ?? [Alpn],
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
