namespace RequestMigration.LoadBalancing;

/// <summary>Names of the built-in load-balancing policies (case-insensitive; <c>-</c> and <c>_</c> are ignored).</summary>
public static class LoadBalancingPolicies
{
    /// <summary>Each request goes to the next instance in turn, from a random start (the default).</summary>
    public const string RoundRobin = "RoundRobin";

    /// <summary>Each request goes to a uniformly random instance.</summary>
    public const string Random = "Random";

    /// <summary>The instance with the fewest streams open from this router; ties go round robin.</summary>
    public const string LeastConnections = "LeastConnections";

    /// <summary>Two random instances; the one with fewer streams open from this router wins.</summary>
    public const string PowerOfTwoChoices = "PowerOfTwoChoices";

    /// <summary>The name a spelling stands for: <c>least_connections</c>, <c>least-connections</c> and <c>LeastConnections</c> are one.</summary>
    internal static string Normalize(string name) =>
        name.Replace("-", string.Empty, StringComparison.Ordinal).Replace("_", string.Empty, StringComparison.Ordinal).Trim().ToUpperInvariant();
}
