namespace RequestMigration.Routing;

/// <summary>What the router does after an attempt ended.</summary>
internal enum NextStep
{
    /// <summary>The response is complete.</summary>
    Done,

    /// <summary>Try again without counting an attempt or telling the consumer.</summary>
    RetryQuietly,

    /// <summary>Try again; the failed attempt counted.</summary>
    Retry,

    /// <summary>The call ends with an exception.</summary>
    Fail,
}

/// <summary>
/// The retry budget and memory of one call: counted attempts, free retries, the instances this request
/// already failed on, items delivered, and the last real error. One per call; not thread-safe.
/// </summary>
/// <remarks>
/// Free retries (see <see cref="AttemptOutcome.IsFree"/>) are bounded by the number of instances the router
/// knew when the call started, plus one for a stale pooled connection: enough to walk past every dead
/// instance once, never a loop.
/// </remarks>
internal sealed class CallBudget(int maxAttempts, int freeRetries, bool migration, TimeSpan maxRetryWait = default)
{
    private HashSet<ulong>? _failedOn;
    private int _freeRetriesLeft = freeRetries;

    /// <summary>What is left of the time this call may wait for an instance to come back.</summary>
    public TimeSpan RetryWaitLeft { get; private set; } = maxRetryWait;

    public void SpendRetryWait(TimeSpan spent) => RetryWaitLeft = spent >= RetryWaitLeft ? TimeSpan.Zero : RetryWaitLeft - spent;

    /// <summary>Counted attempts that failed so far.</summary>
    public int FailedAttempts { get; private set; }

    /// <summary>The attempt number the next attempt carries in its header (1-based, every try counts).</summary>
    public int AttemptNumber { get; private set; } = 1;

    public int MaxAttempts => maxAttempts;

    /// <summary>Items the consumer received over every attempt.</summary>
    public long Delivered { get; set; }

    /// <summary>The error of the last attempt that really failed (not a "no instance" retry), with its exception.</summary>
    public AttemptOutcome? LastFailure { get; private set; }

    /// <summary>The last attempt found no instance to go to (every one was inhibited).</summary>
    public bool LastFoundNoInstance { get; private set; }

    /// <summary>Instances this request already failed on; null while there are none.</summary>
    public IReadOnlySet<ulong>? FailedOn => _failedOn;

    /// <summary>
    /// Whether the retry after <paramref name="outcome"/> would be free (not using up an attempt), asked before
    /// <see cref="OnAttemptEnded"/> records it: such an attempt is not counted in the attempts metric either.
    /// </summary>
    public bool IsFreeRetry(AttemptOutcome outcome) => outcome.IsFree && _freeRetriesLeft > 0;

    /// <summary>Records how an attempt on <paramref name="instanceId"/> ended and decides what comes next.</summary>
    /// <param name="outcome">How it ended.</param>
    /// <param name="instanceId">The instance it ran on.</param>
    /// <param name="itemsRead">Items it delivered.</param>
    public NextStep OnAttemptEnded(AttemptOutcome outcome, ulong instanceId, long itemsRead)
    {
        AttemptNumber++;
        LastFoundNoInstance = false;
        switch (outcome.Result)
        {
            case AttemptResult.Completed:
                return NextStep.Done;
            case AttemptResult.Rejected or AttemptResult.LocalFailure:
                LastFailure = outcome;
                return NextStep.Fail;
        }

        LastFailure = outcome;
        if (outcome.Result != AttemptResult.StaleConnection)
        {
            (_failedOn ??= []).Add(instanceId);
        }

        if (outcome.IsFree && _freeRetriesLeft > 0)
        {
            _freeRetriesLeft--;
            return NextStep.RetryQuietly;
        }

        if (migration && itemsRead > 0)
        {
            // Progress: the retry resumes after what this attempt delivered, so it does not use up an attempt.
            return NextStep.RetryQuietly;
        }

        return CountFailure();
    }

    /// <summary>A retry found no instance to go to; that counts as a failed attempt.</summary>
    public NextStep OnNoInstance()
    {
        LastFoundNoInstance = true;
        return CountFailure();
    }

    private NextStep CountFailure() => ++FailedAttempts >= maxAttempts ? NextStep.Fail : NextStep.Retry;
}
