using RequestMigration.Discovery.Instances;
using RequestMigration.Health;
using RequestMigration.LoadBalancing;
using RequestMigration.Tests.Infrastructure;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.LoadBalancing;

/// <summary>Each built-in policy's choice, from instance states with set in-flight counts.</summary>
public sealed class LoadBalancingPolicyTests
{
    [Fact]
    public void Round_robin_visits_every_instance_in_turn()
    {
        var states = States(0, 0, 0);
        var policy = new RoundRobinPolicy();
        var picks = Enumerable.Range(0, 9).Select(_ => policy.PickInstance(states)!.InstanceId).ToList();
        picks.GroupBy(p => p).ShouldAllBe(g => g.Count() == 3);
        for (var i = 3; i < picks.Count; i++)
        {
            picks[i].ShouldBe(picks[i - 3]);
        }
    }

    [Fact]
    public void Least_connections_takes_the_least_loaded_and_rotates_ties()
    {
        var policy = new LeastConnectionsPolicy();
        policy.PickInstance(States(3, 1, 2))!.InstanceId.ShouldBe(2UL);
        var tied = States(1, 0, 0, 5);
        var picks = Enumerable.Range(0, 20).Select(_ => policy.PickInstance(tied)!.InstanceId).ToHashSet();
        picks.ShouldBe([2UL, 3UL], ignoreOrder: true);
    }

    [Fact]
    public void Power_of_two_choices_never_takes_the_busier_of_two_and_spreads_over_many()
    {
        var policy = new PowerOfTwoChoicesPolicy(new Random(7));
        var two = States(4, 1);
        Enumerable.Range(0, 50).Select(_ => policy.PickInstance(two)!.InstanceId).ShouldAllBe(id => id == 2UL);

        var many = States(0, 0, 0, 0, 9);
        var picks = Enumerable.Range(0, 400).Select(_ => policy.PickInstance(many)!.InstanceId).ToList();
        picks.ShouldNotContain(5UL, "the busiest instance loses every draw it is in");
        picks.Distinct().Count().ShouldBe(4);
    }

    [Fact]
    public void Random_reaches_every_instance()
    {
        var policy = new RandomPolicy(new Random(1));
        var states = States(0, 0, 0);
        Enumerable.Range(0, 100).Select(_ => policy.PickInstance(states)!.InstanceId).Distinct().Count().ShouldBe(3);
    }

    [Theory]
    [InlineData("RoundRobin", "RoundRobin")]
    [InlineData("round_robin", "RoundRobin")]
    [InlineData("least-connections", "LeastConnections")]
    [InlineData("POWEROFTWOCHOICES", "PowerOfTwoChoices")]
    [InlineData(" random ", "Random")]
    public void Names_are_matched_loosely(string given, string expected) =>
        new LoadBalancingPolicyRegistry().Create(given).Name.ShouldBe(expected);

    private static InstanceState[] States(params int[] inFlight)
    {
        var endpoint = EndpointId.Parse("ns/backend/generate");
        var states = new InstanceState[inFlight.Length];
        for (var i = 0; i < inFlight.Length; i++)
        {
            states[i] = new InstanceState(InstanceRecords.Record(endpoint, (ulong)(i + 1)));
            for (var n = 0; n < inFlight[i]; n++)
            {
                states[i].Acquire();
            }
        }

        return states;
    }
}
