using System.Runtime.CompilerServices;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;

namespace RequestMigration.Tools.Cli.Membership;

/// <summary>What <c>rmctl watch</c> reports.</summary>
internal enum MemberEventKind
{
    /// <summary>Registered when the watch started.</summary>
    Present,

    /// <summary>Every instance present at the start has been reported; later events are live.</summary>
    Synced,

    /// <summary>A new instance registered.</summary>
    Joined,

    /// <summary>An instance re-registered with a different record (new tags, a new address).</summary>
    Updated,

    /// <summary>An instance's record was deleted while its lease was live: it deregistered (or was removed by hand).</summary>
    Left,

    /// <summary>An instance's record went with its lease: the lease ran out because its process stopped renewing it.</summary>
    Expired,
}

/// <summary>One membership event.</summary>
internal sealed record MemberEvent(MemberEventKind Kind, InstanceRecord? Instance, DateTimeOffset Time, Verdict? Verdict = null);

/// <summary>
/// Membership of every endpoint under a prefix, from the store's own watch (not a router's, which sees one
/// endpoint), with a <see cref="ILeaseClock"/> to tell an expiry from a departure.
/// </summary>
internal static class MembershipWatch
{
    /// <summary>Streams events until <paramref name="cancellationToken"/> fires.</summary>
    /// <exception cref="StoreUnavailableException">The store cannot be read at the start (a watch would retry quietly forever).</exception>
    public static async IAsyncEnumerable<MemberEvent> RunAsync(StoreConnection connection, string endpointPrefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var keyPrefix = InstanceEntries.KeyPrefix(endpointPrefix);

        // A watch resumes by itself after failures, so against a store that is down from the start it would wait
        // without a word; one read first turns that into a clear error.
        await connection.Store.ListAsync(keyPrefix, cancellationToken).ConfigureAwait(false);

        var clock = LeaseClocks.For(connection, keyPrefix);
        var known = new Dictionary<string, InstanceRecord>(StringComparer.Ordinal);
        var gate = new Lock();
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var poller = PollAsync(clock, () =>
        {
            lock (gate)
            {
                return [.. known.Keys];
            }
        }, stop.Token);

        try
        {
            var synced = false;
            await foreach (var ev in connection.Store.WatchAsync(keyPrefix, cancellationToken).ConfigureAwait(false))
            {
                var now = DateTimeOffset.UtcNow;
                switch (ev.Kind)
                {
                    case WatchEventKind.Synced:
                        if (!synced)
                        {
                            synced = true;
                            string[] keys;
                            lock (gate)
                            {
                                keys = [.. known.Keys];
                            }

                            // Deadlines for what is there before anything can be judged.
                            await RefreshQuietlyAsync(clock, keys, cancellationToken).ConfigureAwait(false);
                            yield return new MemberEvent(MemberEventKind.Synced, null, now);
                        }

                        break;
                    case WatchEventKind.Put:
                        if (InstanceEntries.TryDecode(ev.Key, ev.Value.Span, out var problem) is not { } record)
                        {
                            InstanceEntries.WarnInvalid(connection, ev.Key, problem);
                            break;
                        }

                        InstanceRecord? previous;
                        lock (gate)
                        {
                            known.TryGetValue(ev.Key, out previous);
                            known[ev.Key] = record;
                        }

                        if (previous is null)
                        {
                            if (synced)
                            {
                                // The snapshot's keys are read all at once when it ends.
                                await RefreshQuietlyAsync(clock, [ev.Key], cancellationToken).ConfigureAwait(false);
                            }

                            yield return new MemberEvent(synced ? MemberEventKind.Joined : MemberEventKind.Present, record, now);
                        }
                        else if (!SameRecord(previous, record))
                        {
                            yield return new MemberEvent(MemberEventKind.Updated, record, now);
                        }

                        break;
                    case WatchEventKind.Delete:
                        InstanceRecord? gone;
                        lock (gate)
                        {
                            known.Remove(ev.Key, out gone);
                        }

                        if (gone is not null)
                        {
                            var verdict = clock.Judge(ev.Key, now);
                            yield return new MemberEvent(verdict.Expired ? MemberEventKind.Expired : MemberEventKind.Left, gone, now, verdict);
                        }

                        break;
                }
            }
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await poller.ConfigureAwait(false);
        }
    }

    private static async Task PollAsync(ILeaseClock clock, Func<string[]> keys, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(clock.Period);
        try
        {
            while (await timer.WaitForNextTickAsync(ct).ConfigureAwait(false))
            {
                await RefreshQuietlyAsync(clock, keys(), ct).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static async Task RefreshQuietlyAsync(ILeaseClock clock, IReadOnlyCollection<string> keys, CancellationToken ct)
    {
        try
        {
            await clock.RefreshAsync(keys, ct).ConfigureAwait(false);
        }
        catch (StoreUnavailableException)
        {
            // The store's watch logs the outage and resumes by itself; the deadlines read before it still hold.
        }
    }

    /// <summary>Whether a re-put changed anything an operator would care about (a lease renewal rewrites nothing).</summary>
    private static bool SameRecord(InstanceRecord a, InstanceRecord b) =>
        a.Address == b.Address
        && a.Transport == b.Transport
        && InstanceTags.Format(a.Tags) == InstanceTags.Format(b.Tags)
        && a.Alternates.SequenceEqual(b.Alternates)
        && InstanceTags.Format(a.Metadata) == InstanceTags.Format(b.Metadata);
}
