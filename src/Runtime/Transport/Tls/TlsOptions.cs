namespace RequestMigration.Transport.Tls;

/// <summary>
/// Certificates for both transports. Paths are PEM files; relative paths are resolved against the current
/// directory, then against the application's base directory (where the dev certificates are copied).
/// </summary>
public sealed class TlsOptions
{
    /// <summary>CA certificate clients trust for server certificates (<c>DYN_TLS_CA_FILE</c>). Default <c>certs/ca.pem</c>.</summary>
    public string CaCertificateFile { get; set; } = "certs/ca.pem";

    /// <summary>Server certificate (<c>DYN_TLS_CERT_FILE</c>). Default <c>certs/server.pem</c>.</summary>
    public string CertificateFile { get; set; } = "certs/server.pem";

    /// <summary>Server private key (<c>DYN_TLS_KEY_FILE</c>). Default <c>certs/server-key.pem</c>.</summary>
    public string PrivateKeyFile { get; set; } = "certs/server-key.pem";

    /// <summary>
    /// Accept any server certificate (<c>DYN_TLS_INSECURE=true</c>). Off by default; when on, a warning is
    /// logged at start-up. For local experiments only.
    /// </summary>
    public bool SkipServerCertificateValidation { get; set; }

    /// <summary>Finds a file as documented above; throws naming the option and the paths tried.</summary>
    internal static string Resolve(string path, string option)
    {
        if (Path.IsPathRooted(path))
        {
            return System.IO.File.Exists(path) ? path : throw new FileNotFoundException($"{option}: '{path}' does not exist", path);
        }

        var cwd = Path.GetFullPath(path);
        if (System.IO.File.Exists(cwd))
        {
            return cwd;
        }

        if (System.IO.File.Exists(Path.Combine(AppContext.BaseDirectory, path)))
        {
            return Path.Combine(AppContext.BaseDirectory, path);
        }

        var app = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, path));
        var places = string.Equals(app, cwd, StringComparison.Ordinal) ? $"'{cwd}'" : $"'{cwd}' and '{app}'";
        throw new FileNotFoundException($"{option}: '{path}' not found (looked in {places}); run certs/generate.sh or set the path", path);
    }
}
