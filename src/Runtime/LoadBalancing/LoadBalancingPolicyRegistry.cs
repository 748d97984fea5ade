namespace RequestMigration.LoadBalancing;

/// <summary>
/// The policies routers of one runtime can be created with, by name: the built-in ones
/// (<see cref="LoadBalancingPolicies"/>) and any registered. Thread-safe.
/// </summary>
public sealed class LoadBalancingPolicyRegistry
{
    private readonly Lock _gate = new();
    private readonly Dictionary<string, (string Name, Func<ILoadBalancingPolicy> Factory)> _factories = new(StringComparer.Ordinal);

    internal LoadBalancingPolicyRegistry()
    {
        Register(LoadBalancingPolicies.RoundRobin, static () => new RoundRobinPolicy());
        Register(LoadBalancingPolicies.Random, static () => new RandomPolicy());
        Register(LoadBalancingPolicies.LeastConnections, static () => new LeastConnectionsPolicy());
        Register(LoadBalancingPolicies.PowerOfTwoChoices, static () => new PowerOfTwoChoicesPolicy());
    }

    /// <summary>Every registered name, built-in ones first.</summary>
    public IReadOnlyList<string> Names
    {
        get
        {
            lock (_gate)
            {
                return [.. _factories.Values.Select(v => v.Name)];
            }
        }
    }

    /// <summary>Adds (or replaces) a policy; routers created afterwards can select it by <paramref name="name"/>.</summary>
    /// <param name="name">The name, matched case-insensitively, ignoring <c>-</c> and <c>_</c>.</param>
    /// <param name="factory">Creates one policy object per router.</param>
    public void Register(string name, Func<ILoadBalancingPolicy> factory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        ArgumentNullException.ThrowIfNull(factory);
        lock (_gate)
        {
            _factories[LoadBalancingPolicies.Normalize(name)] = (name, factory);
        }
    }

    /// <summary>Creates the policy named <paramref name="name"/> for one router.</summary>
    /// <exception cref="ArgumentException">No policy has that name; the message lists the names there are.</exception>
    public ILoadBalancingPolicy Create(string name)
    {
        Func<ILoadBalancingPolicy>? factory;
        lock (_gate)
        {
            factory = _factories.TryGetValue(LoadBalancingPolicies.Normalize(name ?? string.Empty), out var f) ? f.Factory : null;
        }

        return factory?.Invoke() ?? throw new ArgumentException(
            $"load-balancing policy '{name}' (RouterOptions.LoadBalancingPolicy, DYN_LB_POLICY) is not known; valid: {string.Join(", ", Names)}", nameof(name));
    }
}
