using System.Net.Security;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace RequestMigration.Bench;

/// <summary>
/// The dev certificates from certs/ (copied next to the binary), loaded once for the gRPC side. Our runtime
/// loads the same files itself through <see cref="RuntimeOptions.Tls"/>, so both sides of the comparison
/// run TLS with the same server certificate and trust exactly the same CA.
/// </summary>
internal static class BenchCertificates
{
    private static readonly Lazy<X509Certificate2> s_ca = new(() => X509Certificate2.CreateFromPem(File.ReadAllText(PathOf("ca.pem"))));

    private static readonly Lazy<X509Certificate2> s_server = new(() =>
    {
        using var pem = X509Certificate2.CreateFromPemFile(PathOf("server.pem"), PathOf("server-key.pem"));

        // A PKCS#12 round trip gives the key a form every TLS backend accepts (the runtime does the same).
        return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
    });

    public static X509Certificate2 Server => s_server.Value;

    public static string PathOf(string file)
    {
        var path = Path.Combine(AppContext.BaseDirectory, "certs", file);
        return File.Exists(path) ? path : throw new FileNotFoundException($"dev certificate '{path}' is missing; build the bench project so certs/ is copied", path);
    }

    /// <summary>Client TLS for gRPC: trust only our CA (like the runtime's client), host name checks on.</summary>
    public static SslClientAuthenticationOptions ClientSslOptions()
    {
        var policy = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            RevocationMode = X509RevocationMode.NoCheck,
        };
        policy.CustomTrustStore.Add(s_ca.Value);
        return new SslClientAuthenticationOptions
        {
            EnabledSslProtocols = SslProtocols.Tls13 | SslProtocols.Tls12,
            CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
            CertificateChainPolicy = policy,
        };
    }
}
