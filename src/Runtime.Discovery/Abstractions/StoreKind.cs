namespace RequestMigration.Discovery;

/// <summary>Which discovery backend to use (<c>DYN_STORE_KV</c>).</summary>
public enum StoreKind
{
    /// <summary>A shared directory (<c>DYN_FILE_KV</c>); the default, needs nothing else running.</summary>
    File,

    /// <summary>In-process memory: only for tests and single-process demos.</summary>
    Mem,

    /// <summary>etcd (<c>ETCD_ENDPOINTS</c>).</summary>
    Etcd,
}

/// <summary>Parses <see cref="StoreKind"/> from configuration text.</summary>
public static class StoreKinds
{
    /// <summary>The accepted spellings, as listed in errors.</summary>
    public const string ValidValues = "file, mem, etcd";

    /// <summary>Parses <c>file</c>, <c>mem</c> or <c>etcd</c> (case-insensitive; empty means <c>file</c>).</summary>
    /// <exception cref="ArgumentException">Any other value; the message lists the valid ones.</exception>
    public static StoreKind Parse(string? value, string source = "DYN_STORE_KV") =>
        (value ?? string.Empty).Trim().ToLowerInvariant() switch
        {
            "" or "file" => StoreKind.File,
            "mem" or "memory" => StoreKind.Mem,
            "etcd" => StoreKind.Etcd,
            _ => throw new ArgumentException($"{source}='{value}' is not a valid store; valid values: {ValidValues}", source),
        };

    /// <summary>The canonical spelling.</summary>
    public static string ToName(this StoreKind kind) => kind switch
    {
        StoreKind.File => "file",
        StoreKind.Mem => "mem",
        StoreKind.Etcd => "etcd",
        _ => kind.ToString(),
    };
}
