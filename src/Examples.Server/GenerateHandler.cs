using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using RequestMigration.Diagnostics;
using RequestMigration.Serving;

namespace Examples.Server;

/// <summary>Streams one item per input character (Unicode scalar); fails after 2 items when the failure mode says so.</summary>
internal sealed partial class GenerateHandler(string serverName, FailureMode mode, TimeSpan itemDelay, TimeProvider time, ILogger<GenerateHandler> logger)
{
    /// <summary>How many items a failing request sends before its stream is cut.</summary>
    public const int ItemsBeforeFailure = 2;

    private int _requests;

    public async IAsyncEnumerable<string> HandleAsync(string input, RequestContext context)
    {
        var number = Interlocked.Increment(ref _requests);
        var fail = mode == FailureMode.Always || (mode == FailureMode.First && number == 1);
        LogRequest(LogValues.Sanitize(context.RequestId), context.Attempt, context.ConnectionId, input.Length);
        var sent = 0;

        // One item per Unicode scalar (Rune), like the original's Rust chars(): going by UTF-16 char would
        // split a character outside the Basic Multilingual Plane (emoji) into two lone surrogates, each
        // sent as U+FFFD. A migrated request (router with DYN_MIGRATION=true) continues where the failed
        // attempt stopped: ResumeFrom counts items delivered, so that many Runes are skipped, not chars.
        var skip = context.ResumeFrom;
        foreach (var c in input.EnumerateRunes())
        {
            if (skip > 0)
            {
                skip--;
                continue;
            }

            if (fail && sent == ItemsBeforeFailure)
            {
                LogSimulating(ItemsBeforeFailure, serverName);
                throw new AbortStreamException($"simulated failure (FAILURE_MODE={mode.Describe()})");
            }

            if (itemDelay > TimeSpan.Zero)
            {
                await Task.Delay(itemDelay, time, context.CancellationToken).ConfigureAwait(false);
            }

            sent++;
            yield return $"from server: {serverName}, data: {c}";
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "request {RequestId} attempt {Attempt} on {ConnectionId}: {Length} characters")]
    private partial void LogRequest(string requestId, int attempt, string connectionId, int length);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Simulating stream error after {Count} characters (server: {ServerName})")]
    private partial void LogSimulating(int count, string serverName);
}
