using RequestMigration.Discovery.Instances;

namespace RequestMigration.Health;

/// <summary>
/// Hears what a router's heartbeats find (<see cref="HeartbeatOptions.Observer"/>), so tools and logs can show
/// "heartbeat ok" and misses as they happen rather than only the final verdict (which is also a
/// <see cref="Membership.MembershipEventKind.Failed"/> event). Called from the router's timer and read paths,
/// never under a lock; keep it quick. An exception it throws is logged and otherwise ignored.
/// </summary>
public interface IHeartbeatObserver
{
    /// <summary>The instance answered a ping.</summary>
    /// <param name="instance">The instance.</param>
    /// <param name="roundTrip">Time from sending the ping to reading its reply.</param>
    void OnReply(InstanceRecord instance, TimeSpan roundTrip);

    /// <summary>A ping got no reply within <see cref="HeartbeatOptions.Timeout"/>.</summary>
    /// <param name="instance">The instance.</param>
    /// <param name="missesInARow">Pings missed in a row, this one included.</param>
    void OnMissed(InstanceRecord instance, int missesInARow);

    /// <summary>The detector declared the instance failed; its streams are being broken.</summary>
    /// <param name="instance">The instance.</param>
    /// <param name="reason">Why, e.g. <c>2 pings in a row got no reply within 3 s</c>.</param>
    void OnFailed(InstanceRecord instance, string reason);
}
