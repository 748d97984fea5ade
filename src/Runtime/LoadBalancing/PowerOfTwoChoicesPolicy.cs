using RequestMigration.Health;

namespace RequestMigration.LoadBalancing;

/// <summary>
/// Draws two different instances at random and takes the one with fewer streams open from this router (as
/// YARP's PowerOfTwoChoices and Envoy's least-request balancer do): nearly the balance of least connections,
/// without every router piling onto the same least-loaded instance at once.
/// </summary>
internal sealed class PowerOfTwoChoicesPolicy(System.Random? random = null) : ILoadBalancingPolicy
{
    private readonly System.Random _random = random ?? System.Random.Shared;

    public string Name => LoadBalancingPolicies.PowerOfTwoChoices;

    public InstanceState? PickInstance(IReadOnlyList<InstanceState> availableInstances)
    {
        var count = availableInstances.Count;
        if (count == 1)
        {
            return availableInstances[0];
        }

        var first = _random.Next(count);
        var second = _random.Next(count - 1);
        if (second >= first)
        {
            second++;
        }

        var a = availableInstances[first];
        var b = availableInstances[second];
        return b.InFlight < a.InFlight ? b : a;
    }
}
