using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using RequestMigration.Discovery.Instances;
using RequestMigration.Health;
using RequestMigration.Routing;
using RequestMigration.Tests.Infrastructure;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Cluster;

/// <summary>The failure detectors' maths and the heartbeat monitor's schedule, on a fake clock.</summary>
public sealed class HeartbeatDetectionTests : IDisposable
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private readonly FakeTimeProvider _time = new(T0);
    private readonly InstanceState _instance = new(InstanceRecords.Record(EndpointId.Parse("ns/c/e"), 7));
    private readonly List<string> _failures = [];
    private HeartbeatMonitor? _monitor;

    public void Dispose() => _monitor?.Dispose();

    [Fact]
    public void Phi_rises_with_silence()
    {
        // Enough replies that the window (100) holds only measured intervals, not the two start-up estimates.
        var d = Detector();
        var t = T0;
        for (var i = 0; i < 200; i++)
        {
            t += TimeSpan.FromSeconds(5);
            d.Heartbeat(t);
        }

        var phis = new[] { 1, 5, 8, 8.5, 9, 12 }.Select(s => d.Phi(t + TimeSpan.FromSeconds(s))).ToArray();
        phis.ShouldBeInOrder(SortDirection.Ascending);
        phis[1].ShouldBeLessThan(1, "one interval of silence is normal");
        d.IsSuspected(t + TimeSpan.FromSeconds(8)).ShouldBeFalse("within interval + acceptable pause");
        d.IsSuspected(t + TimeSpan.FromSeconds(9)).ShouldBeTrue("a second past interval + pause, with a regular peer");
    }

    [Fact]
    public void A_jittery_but_live_peer_is_never_suspected()
    {
        var d = Detector();
        var random = new Random(3);
        var t = T0;
        var maxPhi = 0.0;
        for (var i = 0; i < 2000; i++)
        {
            // Replies 5 s apart give or take 1.5 s; check phi just before each one arrives.
            var next = t + TimeSpan.FromSeconds(5 + ((random.NextDouble() * 3) - 1.5));
            maxPhi = Math.Max(maxPhi, d.Phi(next - TimeSpan.FromMilliseconds(1)));
            d.Heartbeat(next);
            t = next;
        }

        maxPhi.ShouldBeLessThan(8);
    }

    [Fact]
    public void The_phi_formula_matches_known_values()
    {
        PhiAccrualFailureDetector.Phi(1000, 1000, 100).ShouldBe(0.30, 0.01);
        PhiAccrualFailureDetector.Phi(1200, 1000, 100).ShouldBe(1.65, 0.05);
        PhiAccrualFailureDetector.Phi(1500, 1000, 100).ShouldBeGreaterThan(6);
        double.IsFinite(PhiAccrualFailureDetector.Phi(1e9, 1000, 100)).ShouldBeTrue();
    }

    [Fact]
    public void Pings_go_every_interval_on_one_stream_and_replies_keep_the_instance_alive()
    {
        var (a, b) = (new FakeTarget(), new FakeTarget());
        var monitor = Monitor(new HeartbeatOptions());
        monitor.Register(_instance, a);
        monitor.Register(_instance, b);
        var sentAt = new List<TimeSpan>();
        for (var i = 0; i < 10; i++)
        {
            Until(() => a.Pings.Count == 1, TimeSpan.FromSeconds(6));
            sentAt.Add(Elapsed);
            var seq = a.Pings[0];
            a.Pings.Clear();
            _time.Advance(TimeSpan.FromMilliseconds(50));
            monitor.OnPong(_instance, seq);
        }

        // Every 5 s, give or take the monitor's 300 ms tick.
        sentAt.Zip(sentAt.Skip(1), (x, y) => y - x).ShouldAllBe(d => d >= TimeSpan.FromSeconds(5) && d <= TimeSpan.FromSeconds(5.4));
        b.Pings.ShouldBeEmpty("one stream per instance carries the pings");
        _failures.ShouldBeEmpty();
    }

    [Fact]
    public void Two_missed_pings_in_a_row_fail_the_instance_once_and_break_every_stream()
    {
        var (a, b) = (new FakeTarget(), new FakeTarget());
        var monitor = Monitor(new HeartbeatOptions());
        monitor.Register(_instance, a);
        monitor.Register(_instance, b);

        // Ping 1 at ~5 s, missed at ~8 s; its late reply counts for nothing; ping 2 at ~10 s, missed at ~13 s.
        Until(() => a.Pings.Count == 1, TimeSpan.FromSeconds(6));
        AdvanceTo(TimeSpan.FromSeconds(8.8));
        monitor.OnPong(_instance, a.Pings[0]);
        _failures.ShouldBeEmpty("one miss is not enough");
        Until(() => _failures.Count > 0, TimeSpan.FromSeconds(10));
        Elapsed.ShouldBeInRange(TimeSpan.FromSeconds(13), TimeSpan.FromSeconds(14));
        _failures.ShouldHaveSingleItem().ShouldBe("2 pings in a row got no reply within 3 s");
        a.InterruptedBy.ShouldBe("heartbeat failed: 2 pings in a row got no reply within 3 s");
        b.InterruptedBy.ShouldBe(a.InterruptedBy);

        AdvanceTo(Elapsed + TimeSpan.FromSeconds(30));
        _failures.Count.ShouldBe(1);
    }

    [Fact]
    public void The_observer_hears_replies_misses_and_the_verdict_and_cannot_break_the_monitor()
    {
        var a = new FakeTarget();
        var observer = new RecordingObserver();
        var monitor = Monitor(new HeartbeatOptions { Observer = observer });
        monitor.Register(_instance, a);
        Until(() => a.Pings.Count == 1, TimeSpan.FromSeconds(6));
        _time.Advance(TimeSpan.FromMilliseconds(50));
        monitor.OnPong(_instance, a.Pings[0]);
        Until(() => _failures.Count > 0, TimeSpan.FromSeconds(20));

        observer.Seen.ShouldBe(["reply 7 50ms", "missed 7 1", "missed 7 2", "failed 7 2 pings in a row got no reply within 3 s"]);
        a.InterruptedBy.ShouldNotBeNull("a throwing observer must not stop the streams from being broken");
    }

    [Fact]
    public void A_reply_resets_the_miss_count()
    {
        var a = new FakeTarget();
        var monitor = Monitor(new HeartbeatOptions());
        monitor.Register(_instance, a);
        Until(() => a.Pings.Count == 2, TimeSpan.FromSeconds(12)); // ping 1 missed, ping 2 sent
        monitor.OnPong(_instance, a.Pings[1]);
        Until(() => a.Pings.Count == 3, TimeSpan.FromSeconds(6));
        AdvanceTo(Elapsed + TimeSpan.FromSeconds(3.5));            // ping 3 missed: one miss in a row
        _failures.ShouldBeEmpty();
    }

    [Fact]
    public void With_phi_accrual_silence_fails_the_instance_and_regular_replies_do_not()
    {
        var a = new FakeTarget();
        var monitor = Monitor(new HeartbeatOptions { Detector = HeartbeatDetector.PhiAccrual });
        monitor.Register(_instance, a);
        for (var i = 1; i <= 120; i++)
        {
            Until(() => a.Pings.Count == i, TimeSpan.FromSeconds(6));
            monitor.OnPong(_instance, a.Pings[^1]);
        }

        _failures.ShouldBeEmpty();
        var silentFrom = Elapsed;
        Until(() => _failures.Count > 0, TimeSpan.FromSeconds(60));

        // Regular replies about 5 s apart: suspected a little after interval + acceptable pause (8 s).
        (Elapsed - silentFrom).ShouldBeInRange(TimeSpan.FromSeconds(8), TimeSpan.FromSeconds(10));
        _failures.ShouldHaveSingleItem().ShouldStartWith("phi ");
        a.InterruptedBy.ShouldNotBeNull();
    }

    [Fact]
    public void An_instance_without_live_streams_is_not_pinged()
    {
        var a = new FakeTarget();
        var monitor = Monitor(new HeartbeatOptions());
        monitor.Register(_instance, a);
        monitor.Unregister(_instance, a);
        Advance(TimeSpan.FromSeconds(30));
        a.Pings.ShouldBeEmpty();
        _failures.ShouldBeEmpty();
    }

    [Fact]
    public void Heartbeat_settings_come_from_the_environment_and_are_checked()
    {
        var env = new Dictionary<string, string> { ["DYN_HEARTBEAT"] = "true", ["DYN_HEARTBEAT_INTERVAL_SECS"] = "2", ["DYN_HEARTBEAT_TIMEOUT_SECS"] = "1", ["DYN_HEARTBEAT_MISSES"] = "3", ["DYN_HEARTBEAT_DETECTOR"] = "phi", ["DYN_HEARTBEAT_PHI_THRESHOLD"] = "10" };
        var h = new RouterOptions().ApplyEnvironment(n => env.GetValueOrDefault(n)).Heartbeat.ShouldNotBeNull();
        (h.Interval, h.Timeout, h.MissesBeforeFailure, h.Detector, h.PhiThreshold).ShouldBe((TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(1), 3, HeartbeatDetector.PhiAccrual, 10.0));
        new RouterOptions().ApplyEnvironment(_ => null).Heartbeat.ShouldBeNull("off by default");
        Should.Throw<ArgumentException>(() => new RouterOptions().ApplyEnvironment(n => n == "DYN_HEARTBEAT" ? "true" : n == "DYN_HEARTBEAT_DETECTOR" ? "magic" : null)).Message.ShouldContain("valid: misses, phi");
        Should.Throw<ArgumentOutOfRangeException>(() => new RouterOptions { Heartbeat = new HeartbeatOptions { Timeout = TimeSpan.FromSeconds(9) } }.Validate()).Message.ShouldContain("DYN_HEARTBEAT_TIMEOUT_SECS");
    }

    private static PhiAccrualFailureDetector Detector() =>
        new(8, TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(3), 100, TimeSpan.FromSeconds(5));

    private HeartbeatMonitor Monitor(HeartbeatOptions options) =>
        _monitor = new HeartbeatMonitor(options, _time, NullLogger.Instance, (_, reason) => _failures.Add(reason));

    private TimeSpan Elapsed => _time.GetUtcNow() - T0;

    private void Advance(TimeSpan by) => AdvanceTo(Elapsed + by);

    /// <summary>Moves the clock in small steps, so the monitor's periodic tick runs as it would in real time.</summary>
    private void AdvanceTo(TimeSpan sinceStart)
    {
        while (Elapsed < sinceStart)
        {
            _time.Advance(TimeSpan.FromMilliseconds(50));
        }
    }

    private void Until(Func<bool> condition, TimeSpan within)
    {
        var deadline = Elapsed + within;
        while (!condition())
        {
            Elapsed.ShouldBeLessThan(deadline, "the condition did not come true in time");
            _time.Advance(TimeSpan.FromMilliseconds(50));
        }
    }

    private sealed class RecordingObserver : IHeartbeatObserver
    {
        public List<string> Seen { get; } = [];

        public void OnReply(InstanceRecord instance, TimeSpan roundTrip) => Seen.Add($"reply {instance.InstanceId} {roundTrip.TotalMilliseconds}ms");

        public void OnMissed(InstanceRecord instance, int missesInARow) => Seen.Add($"missed {instance.InstanceId} {missesInARow}");

        public void OnFailed(InstanceRecord instance, string reason)
        {
            Seen.Add($"failed {instance.InstanceId} {reason}");
            throw new InvalidOperationException("observer bug");
        }
    }

    private sealed class FakeTarget : IHeartbeatTarget
    {
        public List<ulong> Pings { get; } = [];

        public string? InterruptedBy { get; private set; }

        public ValueTask<bool> SendPingAsync(ulong sequence)
        {
            Pings.Add(sequence);
            return ValueTask.FromResult(true);
        }

        public void Interrupt(string reason) => InterruptedBy = reason;
    }
}
