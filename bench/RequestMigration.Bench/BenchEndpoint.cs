using System.Diagnostics;
using RequestMigration.Discovery.Instances;
using RequestMigration.Serving;

namespace RequestMigration.Bench;

/// <summary>The request of the bench endpoint: how many items to stream, and (for failover) where to cut.</summary>
/// <param name="Count">Items to stream.</param>
/// <param name="CutAfter">When positive, the first attempt is cut (as a crash would) after this many items.</param>
public sealed record StreamRequest(int Count, int CutAfter = 0);

/// <summary>The handlers our endpoint servers run; the gRPC service mirrors <see cref="StreamAsync"/>.</summary>
internal static class BenchEndpoint
{
    public static readonly EndpointId Stream = EndpointId.Parse("bench/backend/stream");

    public static readonly EndpointId Idle = EndpointId.Parse("bench/backend/idle");

    /// <summary>The item every stream carries: a 64-byte ASCII string (66 bytes as JSON, 66 as protobuf).</summary>
    public const string Payload = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    private static long s_lastCut;
    private static int s_idleActive;

    /// <summary>
    /// <see cref="Stopwatch.GetTimestamp"/> just before the last cut. Servers and consumer share this process,
    /// so the consumer can measure cut -> next item on one clock. Failovers are timed one at a time.
    /// </summary>
    public static long LastCutTimestamp => Volatile.Read(ref s_lastCut);

    /// <summary>Idle handlers currently waiting (the idle-stream server reports it).</summary>
    public static int IdleActive => Volatile.Read(ref s_idleActive);

    /// <summary>Per-instance request counts, to check that round robin really spreads the load.</summary>
    public static readonly System.Collections.Concurrent.ConcurrentDictionary<ulong, long> Served = new();

    public static async IAsyncEnumerable<string> StreamAsync(StreamRequest request, RequestContext context)
    {
        Served.AddOrUpdate(context.InstanceId, 1, static (_, n) => n + 1);

        // Never awaits: the producer is always ready, so the server batches frames as it is designed to;
        // the gRPC twin likewise writes as fast as its stream accepts.
        for (var i = 0; i < request.Count; i++)
        {
            if (request.CutAfter > 0 && i == request.CutAfter && context.Attempt == 1)
            {
                Volatile.Write(ref s_lastCut, Stopwatch.GetTimestamp());
                throw new AbortStreamException("bench: cut mid-stream");
            }

            yield return Payload;
        }

        await Task.CompletedTask.ConfigureAwait(false);
    }

    /// <summary>Holds its stream open, doing nothing, until the consumer goes away or the server stops.</summary>
    public static async IAsyncEnumerable<string> IdleAsync(StreamRequest request, RequestContext context)
    {
        await WaitIdleAsync(context.CancellationToken).ConfigureAwait(false);
        yield break;
    }

    /// <summary>The idle wait shared with the gRPC twin, counted so the parent knows every stream has arrived.</summary>
    public static async Task WaitIdleAsync(CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref s_idleActive);
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref s_idleActive);
        }
    }
}
