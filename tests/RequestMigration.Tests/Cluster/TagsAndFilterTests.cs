using System.Collections.Concurrent;
using System.Text;
using RequestMigration.Discovery.Instances;
using RequestMigration.Membership;
using RequestMigration.Routing;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Transport;
using Shouldly;
using Xunit;
using static RequestMigration.Tests.Transport.TransportConformanceTests;

namespace RequestMigration.Tests.Cluster;

/// <summary>Tags on instance records and routers limited by a tag filter (real TCP servers, memory store).</summary>
public sealed class TagsAndFilterTests : IAsyncLifetime
{
    private readonly TestCluster _cluster = new(TransportKind.Tcp);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _cluster.DisposeAsync();

    [Fact]
    public async Task A_filtered_router_sees_and_uses_only_matching_instances()
    {
        var calls = new ConcurrentQueue<string>();
        var a = await _cluster.StartTaggedServerAsync("a", "role=worker,label=worker-a", calls: calls);
        await _cluster.StartTaggedServerAsync("b", "role=worker,label=worker-b,zone=b", calls: calls);
        await _cluster.StartTaggedServerAsync("d", "role=director", calls: calls);
        var router = await _cluster.RouterAsync<string, string>(2, new RouterOptions { Filter = InstanceTags.Parse("role=worker", "test") });
        await Task.Delay(200, Ct); // let every record arrive, so a third instance would have shown up

        router.Instances.Source.Select(r => r.Tags["label"]).Order().ShouldBe(["worker-a", "worker-b"]);
        for (var i = 0; i < 10; i++)
        {
            await Collect(router.GenerateAsync("x", Ct));
        }

        calls.Distinct().Order().ShouldBe(["a", "b"]);
        InstanceTags.Format(router.Instances.FindInSource(a.InstanceId)!.Tags).ShouldBe("label=worker-a,role=worker");

        var narrow = await _cluster.RouterAsync<string, string>(1, new RouterOptions { Filter = InstanceTags.Parse("role=worker, zone=b", "test") });
        narrow.Instances.Source.ShouldHaveSingleItem().Tags["label"].ShouldBe("worker-b");
    }

    [Fact]
    public async Task An_instance_whose_tags_change_moves_in_and_out_of_the_view_without_a_restart()
    {
        var a = await _cluster.StartTaggedServerAsync("a", "role=worker");
        var spare = await _cluster.StartTaggedServerAsync("spare", "role=spare");
        var router = await _cluster.RouterAsync<string, string>(1, new RouterOptions { Filter = InstanceTags.Parse("role=worker", "test") });
        var events = Take(router.Instances.WatchEventsAsync(Ct), 2);

        await spare.UpdateTagsAsync(InstanceTags.Parse("role=worker", "test"), Ct);
        await a.UpdateTagsAsync(InstanceTags.Parse("role=retired", "test"), Ct);

        var seen = await events.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        seen.Select(e => (e.Kind, e.Instance.InstanceId)).ShouldBe([(MembershipEventKind.Joined, spare.InstanceId), (MembershipEventKind.Left, a.InstanceId)]);
        seen[1].Reason.ShouldBe("its tags (role=retired) no longer match the filter");
        router.Instances.Source.ShouldHaveSingleItem().InstanceId.ShouldBe(spare.InstanceId);
        (await Collect(router.GenerateAsync("x", Ct)))[0].Data.ShouldBe("spare:0");
    }

    [Fact]
    public async Task Records_of_older_servers_without_tags_still_load_with_no_tags()
    {
        var endpoint = EndpointId.Parse(TestCluster.DefaultEndpoint);
        var old = """{"instance_id":171,"namespace":"test","component":"backend","endpoint":"generate","transport":"tcp","address":"127.0.0.1:9"}""";
        await _cluster.Store.PutAsync(InstanceKeys.Key(endpoint, 171), Encoding.UTF8.GetBytes(old), 0, Ct);
        var nulls = """{"instance_id":172,"namespace":"test","component":"backend","endpoint":"generate","transport":"tcp","address":"127.0.0.1:9","tags":null,"alternates":null}""";
        await _cluster.Store.PutAsync(InstanceKeys.Key(endpoint, 172), Encoding.UTF8.GetBytes(nulls), 0, Ct);

        var records = await new InstanceRegistry(_cluster.Store).ListAsync(endpoint, Ct);
        records.Select(r => r.InstanceId).ShouldBe([171UL, 172UL]);
        records.ShouldAllBe(r => r.Tags.Count == 0 && r.Alternates.Count == 0);
        var router = await _cluster.RouterAsync<string, string>(2);
        router.Instances.Source.Count.ShouldBe(2);
    }

    [Fact]
    public async Task Tags_over_the_limits_are_rejected_at_registration()
    {
        var tooMany = Enumerable.Range(0, InstanceTags.MaxTags + 1).ToDictionary(i => $"k{i}", i => "v");
        Should.Throw<ArgumentException>(() => _cluster.Runtime().CreateServer(new ServerOptions { Tags = tooMany })).Message.ShouldContain("33 tags; at most 32");

        var server = await _cluster.StartTaggedServerAsync("a", "role=worker");
        var ex = await Should.ThrowAsync<ArgumentException>(() => server.UpdateTagsAsync(new Dictionary<string, string> { ["role"] = new string('x', 300) }, Ct));
        ex.Message.ShouldContain("the value of tag 'role' must be at most 255");

        var registrar = await InstanceRegistrar.StartAsync(new InstanceRegistry(_cluster.Store), TimeSpan.FromSeconds(10), cancellationToken: Ct);
        await using (registrar)
        {
            var record = InstanceRecords.Record(EndpointId.Parse(TestCluster.DefaultEndpoint), registrar.InstanceId) with { Tags = new Dictionary<string, string> { ["bad key!"] = "v" } };
            (await Should.ThrowAsync<ArgumentException>(() => registrar.RegisterAsync(record, Ct))).Message.ShouldContain("tag key 'bad key!'");
        }
    }

    [Theory]
    [InlineData("role", "DYN_INSTANCE_TAGS: 'role' is not key=value")]
    [InlineData("role=worker,=x", "DYN_INSTANCE_TAGS: '=x' has an empty key")]
    [InlineData("role=a,role=b", "DYN_INSTANCE_TAGS: key 'role' appears more than once")]
    [InlineData("zone=a=b", "the value of tag 'zone' must be at most 255 printable characters without ',' or '='")]
    [InlineData("-x=1", "tag key '-x' must be")]
    public void Malformed_tags_are_errors_naming_the_bad_part(string text, string expected)
    {
        Should.Throw<ArgumentException>(() => new ServerOptions().ApplyEnvironment(n => n == "DYN_INSTANCE_TAGS" ? text : null)).Message.ShouldContain(expected);
        Should.Throw<ArgumentException>(() => new RouterOptions().ApplyEnvironment(n => n == "DYN_ROUTER_FILTER" ? text : null)).Message.ShouldContain(expected.Replace("DYN_INSTANCE_TAGS", "DYN_ROUTER_FILTER", StringComparison.Ordinal));
    }

    [Fact]
    public void Tags_parse_trimmed_and_sorted()
    {
        var tags = InstanceTags.Parse(" zone=b , role=worker,label=", "x");
        InstanceTags.Format(tags).ShouldBe("label=,role=worker,zone=b");
        InstanceTags.Matches(tags, InstanceTags.Parse("role=worker", "f")).ShouldBeTrue();
        InstanceTags.Matches(tags, InstanceTags.Parse("role=worker,zone=a", "f")).ShouldBeFalse();
        InstanceTags.Matches(tags, InstanceTags.None).ShouldBeTrue();
        InstanceTags.Parse("  ", "x").ShouldBeEmpty();
    }

    internal static async Task<List<MembershipEvent>> Take(IAsyncEnumerable<MembershipEvent> events, int count)
    {
        var list = new List<MembershipEvent>();
        await foreach (var e in events)
        {
            list.Add(e);
            if (list.Count == count)
            {
                break;
            }
        }

        return list;
    }
}
