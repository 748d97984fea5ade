using System.Diagnostics;
using RequestMigration.Routing;
using RequestMigration.Transport;

namespace RequestMigration.Bench;

/// <summary>
/// Figure 3: a server cuts a stream mid-way (the handler throws AbortStreamException after K items, as the
/// example server's FAILURE_MODE does); we time from the cut (a timestamp the handler takes just before it
/// throws) to the first item the consumer receives from the other instance. Same process, same clock.
/// </summary>
/// <remarks>
/// Two instances; the first attempt of every request is cut, the retry completes. The router runs with
/// <see cref="RouterOptions.InhibitDuration"/> = 0 so reporting the cut instance down does not take it out of
/// rotation: both instances keep serving first attempts (and retries) for the whole run, and every sample is
/// a real cut on a live instance rather than a request that skipped an inhibited one. With 2 instances,
/// round robin sends the retry to the other instance. Failovers run one at a time so the gap is not queueing.
/// gRPC has no counterpart: a call is committed once response headers arrive and is never retried after.
/// </remarks>
internal static class FailoverGap
{
    private const int ItemsBeforeCut = 5;
    private const int ItemsPerRequest = 20;

    public static async Task RunAsync(TransportKind transport, BenchSettings settings, TransportFigures figures)
    {
        await using var cluster = await OurCluster.StartAsync(transport, servers: 2);
        var router = await cluster.CreateRouterAsync(new RouterOptions { InhibitDuration = TimeSpan.Zero, MaxAttempts = 3 });

        for (var i = 0; i < 30; i++)
        {
            await OneAsync(router);
        }

        var gaps = new List<long>(settings.Failovers);
        var detects = new List<long>(settings.Failovers);
        for (var i = 0; i < settings.Failovers; i++)
        {
            var (gap, detect) = await OneAsync(router);
            gaps.Add(gap);
            detects.Add(detect);
        }

        figures.Failovers = gaps.Count;
        figures.FailoverGapMsP50 = Stats.PercentileMs(gaps, 50);
        figures.FailoverGapMsP99 = Stats.PercentileMs(gaps, 99);
        figures.FailoverGapMsMax = Stats.MaxMs(gaps);
        figures.FailoverDetectMsP50 = Stats.PercentileMs(detects, 50);
        Console.Error.WriteLine($"  failover {transport}: gap p50 {figures.FailoverGapMsP50:0.000} ms, p99 {figures.FailoverGapMsP99:0.000} ms, max {figures.FailoverGapMsMax:0.000} ms; detection p50 {figures.FailoverDetectMsP50:0.000} ms ({gaps.Count} failovers)");
    }

    /// <summary>One request whose first attempt is cut; returns (cut -> next data item, cut -> error item) in ticks.</summary>
    private static async Task<(long Gap, long Detect)> OneAsync(PushRouter<StreamRequest, string> router)
    {
        var items = 0;
        var errors = 0;
        long gap = -1;
        long detect = -1;
        await foreach (var item in router.GenerateAsync(new StreamRequest(ItemsPerRequest, ItemsBeforeCut)))
        {
            var now = Stopwatch.GetTimestamp();
            if (item.IsError)
            {
                errors++;
                detect = now - BenchEndpoint.LastCutTimestamp;
                continue;
            }

            if (errors > 0 && gap < 0)
            {
                gap = now - BenchEndpoint.LastCutTimestamp;
            }

            items++;
        }

        // The retry starts over (no resume data is sent), so the consumer sees K items, the error, then all of them.
        if (errors != 1 || items != ItemsBeforeCut + ItemsPerRequest || gap < 0)
        {
            throw new InvalidOperationException($"failover run saw {errors} error item(s) and {items} items; expected 1 and {ItemsBeforeCut + ItemsPerRequest}");
        }

        return (gap, detect);
    }
}
