using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using RequestMigration.Diagnostics;

namespace RequestMigration.Membership;

/// <summary>
/// Fans membership events out to subscribers. Each subscriber has its own bounded channel that drops its
/// oldest event when full, so a slow subscriber never blocks routing; drops are counted and logged.
/// </summary>
/// <remarks>
/// <see cref="Publish"/> is called by the availability view while it holds its lock, which gives every
/// subscriber the events in one global order; it never blocks (TryWrite on a drop-oldest channel).
/// </remarks>
internal sealed partial class MembershipEventHub(string endpoint, ILogger logger, MetricInstruments metrics)
{
    /// <summary>Events a subscriber may fall behind by before the oldest are dropped.</summary>
    public const int Capacity = 1024;

    private readonly Lock _gate = new();
    private readonly KeyValuePair<string, object?> _endpointTag = MetricInstruments.EndpointTag(endpoint);
    private Subscriber[] _subscribers = [];

    public void Publish(MembershipEvent e)
    {
        foreach (var s in Volatile.Read(ref _subscribers))
        {
            s.Channel.Writer.TryWrite(e);
        }
    }

    /// <summary>Subscribes now (so no event after this call is missed) and streams until cancelled.</summary>
    public IAsyncEnumerable<MembershipEvent> Subscribe(CancellationToken cancellationToken)
    {
        var subscriber = new Subscriber(this);
        lock (_gate)
        {
            _subscribers = [.. _subscribers, subscriber];
        }

        return ReadAsync(subscriber, cancellationToken);
    }

    /// <summary>Ends every subscription (the router is disposed).</summary>
    public void Complete()
    {
        lock (_gate)
        {
            foreach (var s in _subscribers)
            {
                s.Channel.Writer.TryComplete();
            }

            _subscribers = [];
        }
    }

    private async IAsyncEnumerable<MembershipEvent> ReadAsync(Subscriber subscriber, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var e in subscriber.Channel.Reader.ReadAllAsync(cancellationToken).ConfigureAwait(false))
            {
                yield return e;
            }
        }
        finally
        {
            lock (_gate)
            {
                _subscribers = [.. _subscribers.Where(s => !ReferenceEquals(s, subscriber))];
            }
        }
    }

    private void OnDropped(Subscriber subscriber)
    {
        metrics.MembershipEventDropped(_endpointTag);
        var dropped = Interlocked.Increment(ref subscriber.Dropped);

        // The first drop and then every thousandth: a subscriber that stays behind is visible, not a flood.
        if (dropped == 1 || dropped % 1000 == 0)
        {
            LogDropped(endpoint, dropped, Capacity);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "membership events for endpoint={Endpoint}: a subscriber fell more than {Capacity} events behind; {Dropped} oldest event(s) dropped so far")]
    private partial void LogDropped(string endpoint, long dropped, int capacity);

    private sealed class Subscriber
    {
        public long Dropped;

        public Subscriber(MembershipEventHub hub) =>
            Channel = System.Threading.Channels.Channel.CreateBounded<MembershipEvent>(
                new BoundedChannelOptions(Capacity) { FullMode = BoundedChannelFullMode.DropOldest, SingleReader = true, SingleWriter = false },
                _ => hub.OnDropped(this));

        public Channel<MembershipEvent> Channel { get; }
    }
}
