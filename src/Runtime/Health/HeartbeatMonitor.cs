using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace RequestMigration.Health;

/// <summary>A live stream the heartbeat monitor can ping through and break.</summary>
internal interface IHeartbeatTarget
{
    /// <summary>Sends a ping on the stream; false when the stream can no longer carry one.</summary>
    ValueTask<bool> SendPingAsync(ulong sequence);

    /// <summary>Breaks the stream now; its consumer sees <paramref name="reason"/> and the request fails over.</summary>
    void Interrupt(string reason);
}

/// <summary>
/// Active health for one router (<see cref="HeartbeatOptions"/>): pings each instance the router has a live
/// stream to, on one of those streams, and runs the failure detector on the replies. When it declares an
/// instance failed it calls back once (the router inhibits the instance) and breaks every live stream to it.
/// </summary>
/// <remarks>
/// One <see cref="TimeProvider"/> timer ticks at a tenth of the shorter of interval and timeout, and does the
/// work for every instance under <c>_gate</c>; pings are sent and streams broken outside it. An instance with
/// no live stream is forgotten, so it is not pinged and holds no state.
/// </remarks>
internal sealed partial class HeartbeatMonitor : IDisposable
{
    private readonly HeartbeatOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Action<InstanceState, string> _onFailed;
    private readonly Lock _gate = new();
    private readonly Dictionary<InstanceState, Peer> _peers = [];
    private readonly ITimer _timer;
    private bool _disposed;

    public HeartbeatMonitor(HeartbeatOptions options, TimeProvider time, ILogger logger, Action<InstanceState, string> onFailed)
    {
        _options = options;
        _time = time;
        _logger = logger;
        _onFailed = onFailed;
        var tick = TimeSpan.FromTicks(Math.Max(TimeSpan.FromMilliseconds(5).Ticks, Math.Min(options.Interval.Ticks, options.Timeout.Ticks) / 10));
        _timer = time.CreateTimer(static s => ((HeartbeatMonitor)s!).Tick(), this, tick, tick);
    }

    /// <summary>A stream to <paramref name="instance"/> is live: ping through it until it is unregistered.</summary>
    public void Register(InstanceState instance, IHeartbeatTarget target)
    {
        lock (_gate)
        {
            if (!_peers.TryGetValue(instance, out var peer))
            {
                var now = _time.GetUtcNow();
                peer = new Peer(_options, now);
                _peers[instance] = peer;
            }

            peer.Targets.Add(target);
        }
    }

    public void Unregister(InstanceState instance, IHeartbeatTarget target)
    {
        lock (_gate)
        {
            if (_peers.TryGetValue(instance, out var peer) && peer.Targets.Remove(target) && peer.Targets.Count == 0)
            {
                _peers.Remove(instance);
            }
        }
    }

    /// <summary>A reply arrived from <paramref name="instance"/>.</summary>
    public void OnPong(InstanceState instance, ulong sequence)
    {
        TimeSpan rtt;
        lock (_gate)
        {
            if (!_peers.TryGetValue(instance, out var peer) || peer.Pending != sequence)
            {
                // A late reply to a ping already counted as missed, or to a stream that has ended.
                return;
            }

            var now = _time.GetUtcNow();
            rtt = now - peer.SentAt;
            peer.Pending = null;
            peer.Misses = 0;
            peer.LastReply = now;
            peer.Detector?.Heartbeat(now);
        }

        LogHeartbeatOk(instance.InstanceId, rtt.TotalMilliseconds);
        Notify(o => o.OnReply(instance.Record, rtt));
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            _peers.Clear();
        }

        _timer.Dispose();
    }

    private void Tick()
    {
        List<(InstanceState Instance, IHeartbeatTarget Target, ulong Sequence)>? pings = null;
        List<(InstanceState Instance, IHeartbeatTarget[] Targets, string Reason)>? failures = null;
        List<(InstanceState Instance, int Misses)>? misses = null;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            var now = _time.GetUtcNow();
            foreach (var (instance, peer) in _peers)
            {
                if (peer.Pending is { } missed && now - peer.SentAt >= _options.Timeout)
                {
                    peer.Pending = null;
                    peer.Misses++;
                    LogMissed(instance.InstanceId, missed, peer.Misses, _options.Timeout.TotalSeconds);
                    if (_options.Observer is not null)
                    {
                        (misses ??= []).Add((instance, peer.Misses));
                    }
                }

                if (FailureReason(peer, now) is { } reason)
                {
                    (failures ??= []).Add((instance, [.. peer.Targets], reason));
                    continue;
                }

                if (peer.Pending is null && now >= peer.NextPingAt)
                {
                    peer.Pending = ++peer.Sequence;
                    peer.SentAt = now;
                    peer.NextPingAt = now + _options.Interval;
                    (pings ??= []).Add((instance, peer.Targets[0], peer.Sequence));
                }
            }

            if (failures is not null)
            {
                foreach (var f in failures)
                {
                    _peers.Remove(f.Instance);
                }
            }
        }

        foreach (var (instance, count) in misses ?? [])
        {
            Notify(o => o.OnMissed(instance.Record, count));
        }

        foreach (var (instance, targets, reason) in failures ?? [])
        {
            LogFailed(instance.InstanceId, reason);
            Notify(o => o.OnFailed(instance.Record, reason));
            _onFailed(instance, reason);
            foreach (var t in targets)
            {
                t.Interrupt($"heartbeat failed: {reason}");
            }
        }

        foreach (var (_, target, sequence) in pings ?? [])
        {
            _ = target.SendPingAsync(sequence);
        }
    }

    /// <summary>Tells the observer, if any; its exception must not stop the timer or a read.</summary>
    private void Notify(Action<IHeartbeatObserver> call)
    {
        if (_options.Observer is not { } observer)
        {
            return;
        }

        try
        {
            call(observer);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogObserverFailed(ex.GetType().Name, ex.Message);
        }
    }

    private string? FailureReason(Peer peer, DateTimeOffset now)
    {
        Debug.Assert(_gate.IsHeldByCurrentThread);
        if (peer.Detector is { } phi)
        {
            var value = phi.Phi(now);
            return value > phi.Threshold
                ? $"phi {value:0.#} > {phi.Threshold:0.#} after {(now - peer.LastReplyOrStart).TotalSeconds:0.#} s without a reply"
                : null;
        }

        return peer.Misses >= _options.MissesBeforeFailure
            ? $"{peer.Misses} pings in a row got no reply within {_options.Timeout.TotalSeconds:0.###} s"
            : null;
    }

    [LoggerMessage(Level = LogLevel.Debug, Message = "heartbeat ok: instance {InstanceId:x} answered in {RttMs:0.0} ms")]
    private partial void LogHeartbeatOk(ulong instanceId, double rttMs);

    [LoggerMessage(Level = LogLevel.Information, Message = "heartbeat {Sequence} to instance {InstanceId:x} got no reply within {TimeoutSeconds:0.###} s ({Misses} in a row)")]
    private partial void LogMissed(ulong instanceId, ulong sequence, int misses, double timeoutSeconds);

    [LoggerMessage(Level = LogLevel.Warning, Message = "heartbeat failure: instance {InstanceId:x} declared failed ({Reason}); breaking its streams")]
    private partial void LogFailed(ulong instanceId, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "heartbeat observer threw {ExceptionType}: {Message}")]
    private partial void LogObserverFailed(string exceptionType, string message);

    private sealed class Peer
    {
        public Peer(HeartbeatOptions options, DateTimeOffset now)
        {
            NextPingAt = now + options.Interval;
            Started = now;
            if (options.Detector == HeartbeatDetector.PhiAccrual)
            {
                Detector = new PhiAccrualFailureDetector(options.PhiThreshold, options.PhiMinStdDeviation, options.PhiAcceptablePause, options.PhiWindowSize, options.Interval);

                // Silence is measured from the first stream; the first reply is due one interval later.
                Detector.Start(now);
            }
        }

        public List<IHeartbeatTarget> Targets { get; } = [];

        public PhiAccrualFailureDetector? Detector { get; }

        public DateTimeOffset Started { get; }

        public DateTimeOffset? LastReply { get; set; }

        public DateTimeOffset LastReplyOrStart => LastReply ?? Started;

        public ulong Sequence { get; set; }

        public ulong? Pending { get; set; }

        public DateTimeOffset SentAt { get; set; }

        public DateTimeOffset NextPingAt { get; set; }

        public int Misses { get; set; }
    }
}
