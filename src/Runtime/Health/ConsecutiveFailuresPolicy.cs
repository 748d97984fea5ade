namespace RequestMigration.Health;

/// <summary>
/// Passive health: an instance is taken out of rotation after <see cref="Threshold"/> failed attempts in a row
/// (<see cref="Routing.RouterOptions.FailuresBeforeInhibit"/>); any success starts the count again. With the
/// default of 1 the first failure inhibits it, as the seed's router does. Called under the availability
/// view's lock.
/// </summary>
internal sealed class ConsecutiveFailuresPolicy(int threshold)
{
    public int Threshold => threshold;

    /// <summary>Counts a failure; true when the instance should be inhibited now (the count then restarts).</summary>
    public bool OnFailure(InstanceState instance)
    {
        instance.ConsecutiveFailures++;
        if (instance.ConsecutiveFailures < threshold)
        {
            return false;
        }

        instance.ConsecutiveFailures = 0;
        return true;
    }

    public static void OnSuccess(InstanceState instance) => instance.ConsecutiveFailures = 0;
}
