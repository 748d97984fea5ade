namespace Examples.Server;

/// <summary>When the example server injects a stream failure (<c>FAILURE_MODE</c>).</summary>
internal enum FailureMode
{
    /// <summary>Never fail.</summary>
    Never,

    /// <summary>Fail only the first request this process serves (default).</summary>
    First,

    /// <summary>Fail every request.</summary>
    Always,
}

internal static class FailureModes
{
    public const string ValidValues = "never, first, always";

    public static bool TryParse(string? value, out FailureMode mode)
    {
        switch ((value ?? "first").Trim().ToLowerInvariant())
        {
            case "never":
                mode = FailureMode.Never;
                return true;
            case "first" or "":
                mode = FailureMode.First;
                return true;
            case "always":
                mode = FailureMode.Always;
                return true;
            default:
                mode = default;
                return false;
        }
    }

    public static string Describe(this FailureMode mode) => mode switch
    {
        FailureMode.Never => "never",
        FailureMode.First => "first request only",
        _ => "always",
    };
}
