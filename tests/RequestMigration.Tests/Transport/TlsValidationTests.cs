using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Transport;

/// <summary>Clients trust only the configured CA; switching validation off is explicit and logged.</summary>
public sealed class TlsValidationTests : IAsyncLifetime
{
    private readonly TestCluster _cluster = new(TransportKind.Tcp);
    private readonly string _otherCa = Path.Combine(Path.GetTempPath(), $"rm-other-ca-{Guid.NewGuid():N}.pem");

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var req = new CertificateRequest("CN=Some Other CA", key, HashAlgorithmName.SHA256);
        req.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        using var ca = req.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        File.WriteAllText(_otherCa, ca.ExportCertificatePem());
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        await _cluster.DisposeAsync();
        File.Delete(_otherCa);
    }

    [Fact]
    public async Task A_server_certificate_from_another_CA_is_refused()
    {
        await _cluster.StartServerAsync<string, string>(Echo);
        var runtime = _cluster.Runtime(o => o.Tls.CaCertificateFile = _otherCa);
        var router = runtime.CreateRouter<string, string>(EndpointId.Parse(TestCluster.DefaultEndpoint), new RouterOptions { MaxAttempts = 1 });
        await router.WaitForInstancesAsync(TimeSpan.FromSeconds(10), Ct);
        var items = new List<Annotated<string>>();
        var ex = await Should.ThrowAsync<LocalConfigurationException>(async () =>
        {
            await foreach (var i in router.GenerateAsync("x", Ct))
            {
                items.Add(i);
            }
        });

        // Our trust settings are at fault, not the instance: it stays in rotation and the error says where to look.
        ex.InnerException.ShouldBeAssignableTo<System.Security.Authentication.AuthenticationException>();
        ex.Message.ShouldContain("DYN_TLS_CA_FILE");
        items.ShouldBeEmpty();
        router.Instances.Available.Count.ShouldBe(1);
        _cluster.Logs.Contains("Reporting instance").ShouldBeFalse();
    }

    [Fact]
    public async Task A_missing_CA_file_fails_when_the_router_is_created_and_names_the_file()
    {
        await _cluster.StartServerAsync<string, string>(Echo);
        var runtime = _cluster.Runtime(o => o.Tls.CaCertificateFile = "/nonexistent/ca.pem");
        var ex = Should.Throw<FileNotFoundException>(() => runtime.CreateRouter<string, string>(EndpointId.Parse(TestCluster.DefaultEndpoint)));
        ex.Message.ShouldContain("/nonexistent/ca.pem");
        ex.Message.ShouldContain("DYN_TLS_CA_FILE");
    }

    [Fact]
    public async Task Skipping_validation_is_explicit_and_logged()
    {
        await _cluster.StartServerAsync<string, string>(Echo);
        var runtime = _cluster.Runtime(o =>
        {
            o.Tls.CaCertificateFile = _otherCa;
            o.Tls.SkipServerCertificateValidation = true;
        });
        var router = runtime.CreateRouter<string, string>(EndpointId.Parse(TestCluster.DefaultEndpoint));
        await router.WaitForInstancesAsync(TimeSpan.FromSeconds(10), Ct);
        (await TransportConformanceTests.Collect(router.GenerateAsync("x", Ct))).Single().Data.ShouldBe("x");
        _cluster.Logs.Contains("server certificate validation is OFF").ShouldBeTrue();
    }

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> Echo(string s, RequestContext ctx)
    {
        yield return s;
    }
#pragma warning restore CS1998
}
