using RequestMigration.Health;

namespace RequestMigration.LoadBalancing;

/// <summary>
/// Picks the instance for the next attempt of a request. A router creates its own policy object when it is
/// created, so a policy may keep per-router state (a round-robin cursor); <see cref="PickInstance"/> is called
/// concurrently and must be thread-safe. Register your own with
/// <see cref="LoadBalancingPolicyRegistry.Register(string, Func{ILoadBalancingPolicy})"/> and select it by name
/// (<see cref="Routing.RouterOptions.LoadBalancingPolicy"/>, <c>DYN_LB_POLICY</c>).
/// </summary>
public interface ILoadBalancingPolicy
{
    /// <summary>The name the policy is selected by.</summary>
    string Name { get; }

    /// <summary>
    /// Picks one of <paramref name="availableInstances"/> (never empty, ordered by instance id; instances
    /// inhibited or already failed by this request are left out). Returning null fails the attempt with
    /// "no instances found".
    /// </summary>
    InstanceState? PickInstance(IReadOnlyList<InstanceState> availableInstances);
}
