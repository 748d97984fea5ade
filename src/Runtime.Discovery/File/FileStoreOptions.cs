namespace RequestMigration.Discovery.File;

/// <summary>Options of the shared-directory store.</summary>
public sealed class FileStoreOptions
{
    /// <summary>Environment variable naming the root directory.</summary>
    public const string RootEnvironmentVariable = "DYN_FILE_KV";

    /// <summary>
    /// Root directory shared by every process of a deployment (<c>DYN_FILE_KV</c>); when empty,
    /// <c>dynamo_store_kv</c> under the system temp directory, created private to the user (mode 0700) and
    /// refused when another user owns it. A directory named here is used with whatever permissions it has, so
    /// it can be shared on purpose.
    /// </summary>
    public string? Root { get; set; }

    /// <summary>
    /// How long a file lives without its owner refreshing it. Any process treats older files as gone and
    /// removes them, which cleans up after crashed processes. Default 10 s.
    /// </summary>
    public TimeSpan Ttl { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How often a watch rescans the directory even without a file-system event. Default 1 s.</summary>
    public TimeSpan RescanInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The system temp directory, under which the default root lives (tests point it elsewhere).</summary>
    internal Func<string> TempPath { get; set; } = Path.GetTempPath;

    /// <summary>Whether <see cref="Root"/> is unset, so the default directory is used.</summary>
    internal bool UsesDefaultRoot => string.IsNullOrWhiteSpace(Root);

    /// <summary>The root actually used.</summary>
    public string ResolveRoot() =>
        UsesDefaultRoot ? Path.Combine(TempPath(), "dynamo_store_kv") : Path.GetFullPath(Root!);

    /// <summary>Rejects values that cannot work, naming the option.</summary>
    public void Validate()
    {
        if (Ttl < TimeSpan.FromSeconds(1))
        {
            throw new ArgumentOutOfRangeException(nameof(Ttl), Ttl, "file store TTL must be at least 1 s");
        }

        if (RescanInterval <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(RescanInterval), RescanInterval, "file store rescan interval must be positive");
        }
    }
}
