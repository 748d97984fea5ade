using Microsoft.Extensions.Logging;

namespace RequestMigration.Tools.Cli.Output;

/// <summary>
/// Runtime and store logs as plain lines on stderr, so stdout carries only the command's output (and stays valid
/// JSON with <c>--json</c>).
/// </summary>
internal sealed class StderrLoggerProvider(bool verbose) : ILoggerProvider
{
    private static readonly Lock Gate = new();

    public ILogger CreateLogger(string categoryName) => new StderrLogger(categoryName, MinimumLevel(categoryName, verbose));

    public void Dispose()
    {
    }

    /// <summary>
    /// Warnings by default. The router's own "instance down" warnings are left out unless verbose: <c>call</c>
    /// already prints each failover with its reason, and the same news twice is noise.
    /// </summary>
    private static LogLevel MinimumLevel(string category, bool verbose)
    {
        if (verbose)
        {
            return LogLevel.Debug;
        }

        return category.StartsWith("RequestMigration.Routing.", StringComparison.Ordinal) || category.StartsWith("RequestMigration.Health.", StringComparison.Ordinal)
            ? LogLevel.Error
            : LogLevel.Warning;
    }

    private sealed class StderrLogger(string category, LogLevel minimum) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None && logLevel >= minimum;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            var level = logLevel switch
            {
                LogLevel.Trace or LogLevel.Debug => "debug",
                LogLevel.Information => "info",
                LogLevel.Warning => "warning",
                _ => "error",
            };
            var source = minimum <= LogLevel.Debug ? $" [{category}]" : string.Empty;
            lock (Gate)
            {
                Console.Error.WriteLine($"{level}{source}: {formatter(state, exception)}");
            }
        }
    }
}
