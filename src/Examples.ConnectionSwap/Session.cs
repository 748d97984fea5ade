using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Examples.ConnectionSwap;

/// <summary>
/// The client's logical session: one <c>connection.id</c> for its whole life, the last sequence number it
/// holds (where any new stream resumes), and a check of every token: in order, none missing, none twice.
/// </summary>
internal sealed class Session(string connectionId, long total, TimeSpan maxWait, ILogger logger)
{
    private readonly Stopwatch _sinceProgress = Stopwatch.StartNew();
    private readonly Stopwatch _waiting = new();
    private readonly List<string> _workers = [];

    public string ConnectionId => connectionId;

    /// <summary>The last sequence number received (0 before the first).</summary>
    public long Last { get; private set; }

    public long Received { get; private set; }

    public long Gaps { get; private set; }

    public long Duplicates { get; private set; }

    public int Switches { get; private set; }

    public string? Worker { get; private set; }

    /// <summary>Every token asked for has arrived.</summary>
    public bool Done => total > 0 && Last >= total;

    public bool Clean => Gaps == 0 && Duplicates == 0;

    /// <summary>Time without a new token; the client gives up after <c>CONNECTION_SWAP_CLIENT_MAX_WAIT_SECS</c>.</summary>
    public bool WaitedTooLong => _sinceProgress.Elapsed > maxWait;

    public TimeSpan SinceProgress => _sinceProgress.Elapsed;

    public void Accept(TokenItem token)
    {
        if (token.Sequence <= Last)
        {
            Duplicates++;
            Log.DuplicateToken(logger, connectionId, token.Worker, token.Sequence, Last);
            return;
        }

        if (token.Sequence != Last + 1)
        {
            Gaps += token.Sequence - Last - 1;
            Log.TokenGap(logger, connectionId, token.Worker, Last + 1, token.Sequence);
        }

        if (token.Text != $"token-{token.Sequence}")
        {
            Log.UnexpectedText(logger, connectionId, token.Worker, token.Sequence, token.Text);
        }

        if (Worker is not null && token.Worker != Worker)
        {
            Switches++;
            Log.SwitchingWorkers(logger, connectionId, Worker, token.Worker, token.Sequence);
        }

        if (_waiting.IsRunning)
        {
            Log.Resumed(logger, connectionId, token.Worker, token.Sequence, _waiting.Elapsed.TotalSeconds);
            _waiting.Reset();
        }

        if (!_workers.Contains(token.Worker))
        {
            _workers.Add(token.Worker);
        }

        Worker = token.Worker;
        Last = token.Sequence;
        Received++;
        _sinceProgress.Restart();
        Log.ReceivedToken(logger, connectionId, token.Worker, token.Sequence);
    }

    /// <summary>No worker (or director) can serve the session right now: say so once per wait, then quietly retry.</summary>
    public void Waiting(string why, TimeSpan retryIn)
    {
        if (_waiting.IsRunning)
        {
            Log.StillWaiting(logger, connectionId, why, retryIn.TotalSeconds);
            return;
        }

        _waiting.Start();
        Log.WaitingForWorker(logger, connectionId, why, Last + 1, maxWait.TotalSeconds);
    }

    public void LogSummary() =>
        Log.Summary(logger, connectionId, Received, Last, Switches, Gaps, Duplicates, _workers.Count == 0 ? "-" : string.Join(",", _workers), Clean ? "gapless and duplicate-free" : "NOT gapless and duplicate-free");
}
