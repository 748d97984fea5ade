using RequestMigration.Health;

namespace RequestMigration.LoadBalancing;

/// <summary>Each pick takes the next instance in turn; the cursor starts at a random place so many routers don't move in step.</summary>
internal sealed class RoundRobinPolicy : ILoadBalancingPolicy
{
    private uint _next = (uint)System.Random.Shared.Next();

    public string Name => LoadBalancingPolicies.RoundRobin;

    public InstanceState? PickInstance(IReadOnlyList<InstanceState> availableInstances) =>
        availableInstances[(int)(Interlocked.Increment(ref _next) % (uint)availableInstances.Count)];
}
