using RequestMigration.Health;

namespace RequestMigration.LoadBalancing;

/// <summary>
/// Picks the instance with the fewest streams this router has open to it (<see cref="InstanceState.InFlight"/>).
/// Ties rotate, so idle instances share the work instead of the lowest id taking it all.
/// </summary>
internal sealed class LeastConnectionsPolicy : ILoadBalancingPolicy
{
    private uint _next = (uint)System.Random.Shared.Next();

    public string Name => LoadBalancingPolicies.LeastConnections;

    public InstanceState? PickInstance(IReadOnlyList<InstanceState> availableInstances)
    {
        var count = availableInstances.Count;
        var start = (int)(Interlocked.Increment(ref _next) % (uint)count);
        var best = availableInstances[start];
        var bestLoad = best.InFlight;
        for (var i = 1; i < count && bestLoad > 0; i++)
        {
            var candidate = availableInstances[(start + i) % count];
            var load = candidate.InFlight;
            if (load < bestLoad)
            {
                best = candidate;
                bestLoad = load;
            }
        }

        return best;
    }
}
