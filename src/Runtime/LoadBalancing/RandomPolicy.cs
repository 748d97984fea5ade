using RequestMigration.Health;

namespace RequestMigration.LoadBalancing;

/// <summary>Each pick is a uniformly random instance.</summary>
internal sealed class RandomPolicy(System.Random? random = null) : ILoadBalancingPolicy
{
    private readonly System.Random _random = random ?? System.Random.Shared;

    public string Name => LoadBalancingPolicies.Random;

    public InstanceState? PickInstance(IReadOnlyList<InstanceState> availableInstances) =>
        availableInstances[_random.Next(availableInstances.Count)];
}
