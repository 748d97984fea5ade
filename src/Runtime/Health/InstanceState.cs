using RequestMigration.Discovery.Instances;

namespace RequestMigration.Health;

/// <summary>
/// One instance as one router sees it: the record discovery holds for it, how many streams this router has
/// open to it right now, and whether it is inhibited. Load-balancing policies read it; the router and
/// <see cref="InstanceAvailability"/> change it.
/// </summary>
public sealed class InstanceState
{
    private InstanceRecord _record;
    private int _inFlight;

    internal InstanceState(InstanceRecord record) => _record = record;

    /// <summary>The latest record discovery holds for the instance.</summary>
    public InstanceRecord Record => Volatile.Read(ref _record);

    /// <summary>The instance id.</summary>
    public ulong InstanceId => Record.InstanceId;

    /// <summary>Streams this router has open to the instance now (attempts in progress, failed ones excluded).</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    // The fields below are guarded by the owning InstanceAvailability's gate.

    /// <summary>When the instance comes back into rotation; <see cref="DateTimeOffset.MinValue"/> when not inhibited.</summary>
    internal DateTimeOffset InhibitedUntil { get; set; } = DateTimeOffset.MinValue;

    /// <summary>Failures reported since the last success (passive health).</summary>
    internal int ConsecutiveFailures { get; set; }

    internal void Update(InstanceRecord record) => Volatile.Write(ref _record, record);

    internal void Acquire() => Interlocked.Increment(ref _inFlight);

    internal void Release() => Interlocked.Decrement(ref _inFlight);
}
