using System.IO.Compression;
using System.Xml.Linq;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>
/// The NuGet packages as a user gets them (issue 12, "Packages"): both projects packed into a local folder feed,
/// their contents checked, and the README's library snippet restored from that feed in a new project outside the
/// repository, built and run: a server and a router in one process, items received.
/// </summary>
/// <remarks>
/// Each run packs a version of its own (<c>{VersionPrefix}-pkgtest-{random}</c>) into a packages folder of its own
/// (<c>NUGET_PACKAGES</c>), so no cache can hand back an older build of the same version and the machine's cache is
/// left alone. Dependencies come from the machine's packages folder (a fallback folder) and, failing that, from
/// the registry. Building happens under an artifacts path in the temporary directory, so the repository's own
/// bin and obj folders, which other tests run from, are not touched.
/// </remarks>
[Collection(EndToEndCollection.Name)]
public sealed class PackageTests : IDisposable
{
    // What this machine restores from (dotnet nuget list source); the local feed is added before it.
    private const string RegistrySource = "https://api.nuget.org/v3/index.json";

    private static readonly XNamespace Nuspec = "http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd";

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "rm-pkg-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    [Fact]
    public async Task Both_packages_restore_from_a_local_feed_and_run_the_readme_snippet()
    {
        var ct = TestContext.Current.CancellationToken;
        var root = ExampleHarness.RepoRoot;
        var versionPrefix = VersionPrefix(root);
        var suffix = "pkgtest-" + Guid.NewGuid().ToString("N")[..12];
        var version = $"{versionPrefix}-{suffix}";
        var feed = Path.Combine(_dir, "feed");
        Directory.CreateDirectory(feed);

        // Nothing above the temporary directory may configure these builds (not the repository's props, wherever
        // TMPDIR points).
        foreach (var file in new[] { "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props" })
        {
            await File.WriteAllTextAsync(Path.Combine(_dir, file), "<Project />\n", ct);
        }

        foreach (var packed in new[] { "src/Runtime.Discovery/Runtime.Discovery.csproj", "src/Runtime/Runtime.csproj" })
        {
            var (packCode, packOutput) = await ReadmeSnippetTests.RunAsync(
                root,
                TimeSpan.FromMinutes(5),
                ["pack", packed, "-c", "Release", "-nologo", "-v", "q", "-o", feed, "--artifacts-path", Path.Combine(_dir, "artifacts"), $"-p:VersionSuffix={suffix}"],
                new Dictionary<string, string>());
            packCode.ShouldBe(0, $"dotnet pack {packed} failed:\n{packOutput}");
        }

        Directory.GetFiles(feed).Select(Path.GetFileName).Order(StringComparer.Ordinal).ShouldBe(
        [
            $"RequestMigration.{version}.nupkg",
            $"RequestMigration.{version}.snupkg",
            $"RequestMigration.Discovery.{version}.nupkg",
            $"RequestMigration.Discovery.{version}.snupkg",
        ]);

        var runtime = CheckPackage(feed, "RequestMigration", version);
        var discovery = CheckPackage(feed, "RequestMigration.Discovery", version);
        runtime.ShouldContainKeyAndValue("RequestMigration.Discovery", $"[{version}]", "the runtime uses the discovery assembly's internals, so only the version it was built with will do");
        runtime.Keys.ShouldNotContain("dotnet-etcd", "the etcd client is a dependency of the discovery package only");
        runtime.Keys.ShouldNotContain(id => id.StartsWith("Grpc.", StringComparison.Ordinal));
        runtime.Keys.ShouldNotContain("Microsoft.CodeAnalysis.PublicApiAnalyzers", "the analyzer is a build-time tool, not a dependency");
        discovery.Keys.ShouldContain("dotnet-etcd");

        // A new project as the README shows it, restoring from the feed.
        var readme = await File.ReadAllTextAsync(Path.Combine(root, "README.md"), ct);
        var project = ReadmeSnippetTests.Snippet(readme, "package-csproj", "xml");
        var reference = $"<PackageReference Include=\"RequestMigration\" Version=\"{versionPrefix}\" />";
        project.ShouldContain(reference, Case.Sensitive, "the README's package project file references the version in Directory.Build.props");
        var app = Path.Combine(_dir, "app");
        Directory.CreateDirectory(app);
        await File.WriteAllTextAsync(Path.Combine(app, "app.csproj"), project.Replace(reference, reference.Replace(versionPrefix, version, StringComparison.Ordinal), StringComparison.Ordinal), ct);
        await File.WriteAllTextAsync(Path.Combine(app, "Program.cs"), ReadmeSnippetTests.Snippet(readme, "program", "csharp"), ct);
        await File.WriteAllTextAsync(Path.Combine(app, "nuget.config"), NuGetConfig(feed), ct);

        var packages = Path.Combine(_dir, "packages");
        var (buildCode, buildOutput) = await ReadmeSnippetTests.RunAsync(
            app,
            TimeSpan.FromMinutes(4),
            ["build", "-c", "Release", "-nologo", "-v", "q"],
            new Dictionary<string, string> { ["NUGET_PACKAGES"] = packages });
        buildCode.ShouldBe(0, $"the README's snippet does not build against the packages:\n{buildOutput}");
        Directory.Exists(Path.Combine(packages, "requestmigration", version)).ShouldBeTrue("RequestMigration came from the local feed");
        Directory.Exists(Path.Combine(packages, "requestmigration.discovery", version)).ShouldBeTrue("RequestMigration.Discovery came along as a dependency");

        var bin = Path.Combine(app, "bin", "Release", "net10.0");
        var store = Path.Combine(_dir, "store");
        Directory.CreateDirectory(store);
        var (runCode, runOutput) = await ReadmeSnippetTests.RunAsync(bin, TimeSpan.FromSeconds(60), [Path.Combine(bin, "app.dll")], new Dictionary<string, string>
        {
            ["DYN_FILE_KV"] = store,
            ["DYN_TLS_CA_FILE"] = Path.Combine(root, "certs", "ca.pem"),
            ["DYN_TLS_CERT_FILE"] = Path.Combine(root, "certs", "server.pem"),
            ["DYN_TLS_KEY_FILE"] = Path.Combine(root, "certs", "server-key.pem"),
        });

        runCode.ShouldBe(0, runOutput);
        runOutput.Split('\n').Select(l => l.TrimEnd('\r')).Where(l => l.Length == 1).ShouldBe(["h", "e", "l", "l", "o"], runOutput);
        runOutput.ShouldNotContain("attempt failed", Case.Sensitive, runOutput);
    }

    /// <summary>
    /// Checks one package and its symbols package: README, XML docs, license expression, repository metadata.
    /// Returns its dependencies (id to version).
    /// </summary>
    private static Dictionary<string, string> CheckPackage(string feed, string id, string version)
    {
        using var package = ZipFile.OpenRead(Path.Combine(feed, $"{id}.{version}.nupkg"));
        var entries = package.Entries.Select(e => e.FullName).ToList();
        entries.ShouldContain("README.md", $"{id}: no README in the package");
        entries.ShouldContain($"lib/net10.0/{id}.dll");
        entries.ShouldContain($"lib/net10.0/{id}.xml", $"{id}: no XML documentation in the package");

        XElement nuspec;
        using (var stream = package.GetEntry($"{id}.nuspec")!.Open())
        {
            nuspec = XDocument.Load(stream).Root!.Element(Nuspec + "metadata")!;
        }

        nuspec.Element(Nuspec + "id")!.Value.ShouldBe(id);
        nuspec.Element(Nuspec + "version")!.Value.ShouldBe(version);
        nuspec.Element(Nuspec + "description")!.Value.ShouldNotBeNullOrWhiteSpace();
        nuspec.Element(Nuspec + "authors")!.Value.ShouldNotBeNullOrWhiteSpace();
        nuspec.Element(Nuspec + "tags")!.Value.ShouldNotBeNullOrWhiteSpace();
        nuspec.Element(Nuspec + "readme")!.Value.ShouldBe("README.md");
        var license = nuspec.Element(Nuspec + "license")!;
        (license.Attribute("type")?.Value).ShouldBe("expression");
        license.Value.ShouldBe("MIT");
        var repository = nuspec.Element(Nuspec + "repository");
        repository.ShouldNotBeNull($"{id}: no repository metadata");
        (repository.Attribute("type")?.Value).ShouldBe("git");
        if (Path.Exists(Path.Combine(ExampleHarness.RepoRoot, ".git")))
        {
            (repository.Attribute("commit")?.Value ?? "(none)").ShouldMatch("^[0-9a-f]{40}$", $"{id}: the package does not name the commit it was built from");
        }

        using (var symbols = ZipFile.OpenRead(Path.Combine(feed, $"{id}.{version}.snupkg")))
        {
            symbols.Entries.Select(e => e.FullName).ShouldContain($"lib/net10.0/{id}.pdb");
        }

        return nuspec.Element(Nuspec + "dependencies")!.Descendants(Nuspec + "dependency")
            .ToDictionary(d => d.Attribute("id")!.Value, d => d.Attribute("version")!.Value);
    }

    /// <summary>The version every package has (Directory.Build.props).</summary>
    private static string VersionPrefix(string root)
    {
        var props = XDocument.Load(Path.Combine(root, "Directory.Build.props"));
        var prefix = props.Descendants("VersionPrefix").Single().Value.Trim();
        prefix.ShouldMatch(@"^\d+\.\d+\.\d+$");
        return prefix;
    }

    /// <summary>
    /// The feed for RequestMigration*, the registry for everything else (source mapping: our ids are never looked up
    /// there); the machine's packages folder as a fallback, so dependencies it already holds need no download.
    /// </summary>
    private static string NuGetConfig(string feed)
    {
        var machinePackages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } p
            ? p
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        return new XDocument(
            new XElement(
                "configuration",
                new XElement(
                    "packageSources",
                    new XElement("clear"),
                    new XElement("add", new XAttribute("key", "local"), new XAttribute("value", feed)),
                    new XElement("add", new XAttribute("key", "registry"), new XAttribute("value", RegistrySource), new XAttribute("protocolVersion", "3"))),
                new XElement(
                    "packageSourceMapping",
                    new XElement("packageSource", new XAttribute("key", "local"), Pattern("RequestMigration"), Pattern("RequestMigration.*")),
                    new XElement("packageSource", new XAttribute("key", "registry"), Pattern("*"))),
                new XElement("fallbackPackageFolders", new XElement("add", new XAttribute("key", "machine"), new XAttribute("value", machinePackages))))).ToString();

        static XElement Pattern(string pattern) => new("package", new XAttribute("pattern", pattern));
    }
}
