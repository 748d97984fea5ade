namespace RequestMigration.Tools.Cli;

/// <summary>The exit codes rmctl documents (README, rmctl section).</summary>
internal static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>The command ran and failed: store unreachable, key not found, request failed.</summary>
    public const int Failure = 1;

    /// <summary>The command line or the configuration it reads is wrong; nothing was attempted.</summary>
    public const int Usage = 2;

    /// <summary>A <c>call</c> stopped by Ctrl+C (128 + SIGINT, as shells report it).</summary>
    public const int Interrupted = 130;
}

/// <summary>A bad command line or setting: reported as one line, exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);

/// <summary>A failure the command reports as one line (exit code 1); the message already says what and where.</summary>
internal sealed class CliFailureException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>Messages of runtime exceptions, fit for one line.</summary>
internal static class ErrorText
{
    /// <summary>
    /// The message without the <c> (Parameter 'X')</c> suffix .NET appends: the runtime's messages already name the
    /// variable or option.
    /// </summary>
    public static string Of(ArgumentException ex)
    {
        var suffix = ex.ParamName is { } name ? $" (Parameter '{name}')" : null;
        return suffix is not null && ex.Message.EndsWith(suffix, StringComparison.Ordinal) ? ex.Message[..^suffix.Length] : ex.Message;
    }
}
