using System.Diagnostics;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Etcd;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Etcd;

/// <summary>Which etcd endpoint is asked, and which failures move a call on to the next one; no etcd needed.</summary>
public sealed class EtcdEndpointSelectionTests
{
    [Theory]
    [InlineData(StatusCode.Unavailable, true)] // down member, "etcdserver: no leader", "etcdserver: request timed out"
    [InlineData(StatusCode.DeadlineExceeded, true)]
    [InlineData(StatusCode.Unknown, true)] // "context deadline exceeded" from a member cut off from its peers
    [InlineData(StatusCode.Internal, true)]
    [InlineData(StatusCode.Cancelled, true)] // cancelled by the member, not by us
    [InlineData(StatusCode.ResourceExhausted, true)] // "etcdserver: too many requests"
    [InlineData(StatusCode.Aborted, true)]
    [InlineData(StatusCode.DataLoss, true)]
    [InlineData(StatusCode.NotFound, false)] // "requested lease not found" holds on every member
    [InlineData(StatusCode.InvalidArgument, false)]
    [InlineData(StatusCode.AlreadyExists, false)]
    [InlineData(StatusCode.PermissionDenied, false)]
    [InlineData(StatusCode.Unauthenticated, false)]
    [InlineData(StatusCode.FailedPrecondition, false)]
    [InlineData(StatusCode.OutOfRange, false)]
    [InlineData(StatusCode.Unimplemented, false)]
    public void Every_failure_but_an_answer_about_the_request_moves_on_to_the_next_endpoint(StatusCode code, bool movesOn) =>
        EtcdErrors.IsEndpointFailure(code).ShouldBe(movesOn);

    [Fact]
    public void Keep_alives_and_watches_require_a_leader_as_etcds_own_client_does()
    {
        var headers = EtcdErrors.RequireLeader();
        headers.Single().Key.ShouldBe("hasleader");
        headers.Single().Value.ShouldBe("true");
    }

    [Fact]
    public void Processes_start_at_random_endpoints()
    {
        var random = new Random(1234);
        var starts = Enumerable.Range(0, 300)
            .Select(_ => new EtcdEndpointSelector(3, TimeSpan.FromSeconds(30), TimeProvider.System, random).Order()[0])
            .GroupBy(i => i)
            .ToDictionary(g => g.Key, g => g.Count());
        starts.Keys.Order().ShouldBe([0, 1, 2]);
        starts.Values.ShouldAllBe(n => n > 60, "300 processes over 3 endpoints: each should get about 100");
    }

    [Fact]
    public void A_failed_endpoint_is_skipped_for_the_quarantine_then_asked_again()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var s = new EtcdEndpointSelector(3, TimeSpan.FromSeconds(30), time, new FixedRandom(0));
        s.Order().ShouldBe([0, 1, 2]);

        s.Failed(0).ShouldBeTrue();
        s.Order().ShouldBe([1, 2, 0], "the failed endpoint goes last");
        s.Succeeded(1);
        s.Order().ShouldBe([1, 2, 0]);

        // Another endpoint failing does not bring the quarantined one back early.
        s.Failed(1).ShouldBeTrue();
        s.Order().ShouldBe([2, 0, 1], "healthy first, then the quarantined ones, soonest released first");

        time.Advance(TimeSpan.FromSeconds(30));
        s.IsQuarantined(0).ShouldBeFalse();
        s.Order()[..2].ShouldBe([2, 0]);
    }

    [Fact]
    public void A_bad_spell_is_reported_once_and_ends_when_the_endpoint_answers()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var s = new EtcdEndpointSelector(2, TimeSpan.FromSeconds(5), time, new FixedRandom(0));
        s.Failed(0).ShouldBeTrue();
        s.Failed(0).ShouldBeFalse();
        time.Advance(TimeSpan.FromSeconds(10));
        s.Failed(0).ShouldBeFalse("still the same bad spell: it has not answered since");
        s.Succeeded(0);
        s.IsQuarantined(0).ShouldBeFalse();
        s.Failed(0).ShouldBeTrue();
    }

    [Fact]
    public void Without_quarantine_a_failed_endpoint_is_still_not_asked_first()
    {
        var s = new EtcdEndpointSelector(3, TimeSpan.Zero, TimeProvider.System, new FixedRandom(1));
        s.Failed(1);
        s.Order().ShouldBe([2, 0, 1]);
    }

    [Fact]
    public async Task Each_failing_endpoint_is_reported_once_per_bad_spell()
    {
        // The first endpoint refuses, the second hangs: every call tries both and fails, but each endpoint is
        // reported once, not once per call.
        await using var silent = new SilentListener();
        var dead = EtcdFixture.FreePort();
        var logger = new CapturingLogger<EtcdKeyValueStore>();
        var options = new EtcdStoreOptions
        {
            Endpoints = [new Uri($"http://127.0.0.1:{dead}"), silent.Url],
            CallTimeout = TimeSpan.FromMilliseconds(500),
        };
        await using var store = new EtcdKeyValueStore(options, null, logger, new FixedRandom(0));
        store.PreferredEndpoint.ShouldBe(0);

        for (var i = 0; i < 3; i++)
        {
            var ex = await Should.ThrowAsync<StoreUnavailableException>(async () => await store.GetAsync("a/b"));
            ex.Message.ShouldContain($"127.0.0.1:{dead}: Unavailable: connection refused");
            ex.Message.ShouldContain($"127.0.0.1:{silent.Port}: DeadlineExceeded");
        }

        var reports = logger.Entries().Where(e => e.Message.Contains(" failed (", StringComparison.Ordinal)).Select(e => e.Message).ToList();
        reports.Count(r => r.Contains($"127.0.0.1:{dead}", StringComparison.Ordinal)).ShouldBe(1, string.Join('\n', reports));
        reports.Count(r => r.Contains($"127.0.0.1:{silent.Port}", StringComparison.Ordinal)).ShouldBe(1, string.Join('\n', reports));
    }

    [Fact]
    public async Task An_instant_refusal_is_not_reported_as_a_time_out()
    {
        var port = EtcdFixture.FreePort();
        await using var store = new EtcdKeyValueStore(new EtcdStoreOptions { Endpoints = [new Uri($"http://127.0.0.1:{port}")] });
        var sw = Stopwatch.StartNew();
        var ex = await Should.ThrowAsync<StoreUnavailableException>(async () => await store.GrantLeaseAsync(TimeSpan.FromSeconds(5)));
        sw.Elapsed.ShouldBeLessThan(TimeSpan.FromSeconds(1.5));
        ex.Message.ShouldNotContain("no answer within");
        ex.Message.ShouldContain("connection refused");
        ex.Message.ShouldContain($"127.0.0.1:{port}");
    }

    [Fact]
    public async Task Endpoint_names_leave_out_credentials()
    {
        var options = new EtcdStoreOptions { Endpoints = [new Uri("http://user:secret@127.0.0.1:2379")] };
        await using var store = new EtcdKeyValueStore(options);
        store.Endpoints.ShouldBe(["http://127.0.0.1:2379"]);
    }

    [Fact]
    public void A_negative_quarantine_is_rejected_naming_the_option()
    {
        Should.Throw<ArgumentOutOfRangeException>(() => new EtcdStoreOptions { EndpointQuarantine = TimeSpan.FromSeconds(-1) }.Validate())
            .ParamName.ShouldBe(nameof(EtcdStoreOptions.EndpointQuarantine));
    }

    /// <summary>Always picks the same first endpoint.</summary>
    internal sealed class FixedRandom(int value) : Random
    {
        public override int Next(int maxValue) => value % maxValue;
    }
}

/// <summary>Logs through a capturing logger whatever category asks.</summary>
internal sealed class CapturingLoggerFactory : ILoggerFactory
{
    private readonly CapturingLogger<object> _logger = new();

    public List<(LogLevel Level, string Message)> Entries() => _logger.Entries();

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public ILogger CreateLogger(string categoryName) => _logger;

    public void Dispose()
    {
    }
}
