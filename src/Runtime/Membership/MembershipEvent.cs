using RequestMigration.Discovery.Instances;

namespace RequestMigration.Membership;

/// <summary>What happened to an instance, as one router sees it.</summary>
public enum MembershipEventKind
{
    /// <summary>Discovery reports a new instance (that matches the router's filter).</summary>
    Joined,

    /// <summary>The instance is gone from discovery (deregistered, lease expired) or no longer matches the filter.</summary>
    Left,

    /// <summary>The instance was taken out of rotation: reported down after failures, or its heartbeats failed.</summary>
    Failed,

    /// <summary>An instance that failed is back in rotation after its inhibit duration.</summary>
    Recovered,
}

/// <summary>One membership change, with the instance's record at that moment.</summary>
/// <param name="Kind">What happened.</param>
/// <param name="Instance">The instance record (id, address, transport, tags).</param>
/// <param name="Timestamp">When the router saw it (its <see cref="TimeProvider"/>).</param>
/// <param name="Reason">Why, for <see cref="MembershipEventKind.Failed"/> and <see cref="MembershipEventKind.Left"/>; null otherwise.</param>
public sealed record MembershipEvent(MembershipEventKind Kind, InstanceRecord Instance, DateTimeOffset Timestamp, string? Reason = null)
{
    /// <inheritdoc />
    public override string ToString() =>
        Reason is null ? $"{Kind} {Instance.InstanceId:x} at {Instance.Address}" : $"{Kind} {Instance.InstanceId:x} at {Instance.Address}: {Reason}";
}
