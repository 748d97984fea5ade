using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace RequestMigration.Tests.BadInput;

/// <summary>Keeps every log line of a runtime so tests can see what the server noticed.</summary>
internal sealed class CapturedLogs : ILoggerProvider
{
    private readonly ConcurrentQueue<(LogLevel Level, string Category, string Message, Exception? Exception)> _entries = new();

    public IReadOnlyList<(LogLevel Level, string Category, string Message, Exception? Exception)> Entries => [.. _entries];

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public bool Contains(string text) => _entries.Any(e => e.Message.Contains(text, StringComparison.Ordinal));

    /// <summary>Polls until a line containing <paramref name="text"/> appears (server-side logging runs after the client sees the effect).</summary>
    public async Task<bool> WaitForAsync(string text, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!Contains(text))
        {
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            await Task.Delay(20);
        }

        return true;
    }

    /// <summary>Entries at <see cref="LogLevel.Error"/> or above.</summary>
    public IReadOnlyList<string> Errors => [.. _entries.Where(e => e.Level >= LogLevel.Error).Select(Format)];

    public string Dump() => string.Join('\n', _entries.Select(Format));

    private static string Format((LogLevel Level, string Category, string Message, Exception? Exception) e)
    {
        var message = e.Message.Length > 300 ? e.Message[..300] + $"... ({e.Message.Length} chars)" : e.Message;
        var ex = e.Exception is null ? string.Empty : $" | {e.Exception.GetType().Name}: {e.Exception.Message}";
        return $"[{e.Level}] {e.Category}: {message}{ex}";
    }

    public void Dispose()
    {
    }

    private sealed class Logger(CapturedLogs owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            owner._entries.Enqueue((logLevel, category, formatter(state, exception), exception));
    }
}
