namespace RequestMigration.Discovery.Etcd;

/// <summary>
/// Which etcd endpoint to ask first. Each process starts at a random endpoint, so one bad member never has the
/// whole fleet on it; it stays with the endpoint that last answered; an endpoint that failed is skipped for
/// <see cref="EtcdStoreOptions.EndpointQuarantine"/> while others are available, and only asked again as a last
/// resort (or once the quarantine is over).
/// </summary>
/// <remarks>Thread-safe; time comes from the injected <see cref="TimeProvider"/>.</remarks>
internal sealed class EtcdEndpointSelector
{
    private readonly Lock _gate = new();
    private readonly TimeProvider _time;
    private readonly TimeSpan _quarantine;

    // Per endpoint: the instant (UTC ticks of _time) until which it is skipped (0: never failed), and whether it
    // has failed since it last answered.
    private readonly long[] _quarantinedUntil;
    private readonly bool[] _failing;
    private int _preferred;

    /// <param name="count">Number of endpoints (at least 1).</param>
    /// <param name="quarantine">How long a failed endpoint is skipped; zero never skips one.</param>
    /// <param name="time">Clock for the quarantine.</param>
    /// <param name="random">Picks the first endpoint.</param>
    public EtcdEndpointSelector(int count, TimeSpan quarantine, TimeProvider time, Random random)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        _time = time;
        _quarantine = quarantine;
        _quarantinedUntil = new long[count];
        _failing = new bool[count];
        _preferred = random.Next(count);
    }

    /// <summary>Number of endpoints.</summary>
    public int Count => _quarantinedUntil.Length;

    /// <summary>The endpoint asked first while it is healthy: the one that answered last (at first a random one).</summary>
    public int Preferred
    {
        get
        {
            lock (_gate)
            {
                return _preferred;
            }
        }
    }

    /// <summary>
    /// Every endpoint once, in the order to try them: round the list from the preferred one, healthy endpoints
    /// first, then quarantined ones, those released soonest first.
    /// </summary>
    public int[] Order()
    {
        var now = _time.GetUtcNow().UtcTicks;
        lock (_gate)
        {
            var n = _quarantinedUntil.Length;
            return
            [
                .. Enumerable.Range(0, n)
                    .Select(i => (_preferred + i) % n)
                    .OrderBy(i => _quarantinedUntil[i] > now ? _quarantinedUntil[i] : 0),
            ];
        }
    }

    /// <summary>Whether <paramref name="index"/> is being skipped now.</summary>
    public bool IsQuarantined(int index)
    {
        var now = _time.GetUtcNow().UtcTicks;
        lock (_gate)
        {
            return _quarantinedUntil[index] > now;
        }
    }

    /// <summary>Endpoint <paramref name="index"/> answered: it becomes the preferred one and is healthy again.</summary>
    public void Succeeded(int index)
    {
        lock (_gate)
        {
            _preferred = index;
            _quarantinedUntil[index] = 0;
            _failing[index] = false;
        }
    }

    /// <summary>
    /// Endpoint <paramref name="index"/> failed: it is skipped for the quarantine period, and a call no longer
    /// starts there. Returns whether it had been answering until now, so the caller reports a member going bad
    /// once per bad spell rather than on every call.
    /// </summary>
    public bool Failed(int index)
    {
        var now = _time.GetUtcNow().UtcTicks;
        lock (_gate)
        {
            var first = !_failing[index];
            _failing[index] = true;
            _quarantinedUntil[index] = Math.Max(_quarantinedUntil[index], now + _quarantine.Ticks);
            if (_preferred == index)
            {
                _preferred = (index + 1) % _quarantinedUntil.Length;
            }

            return first;
        }
    }
}
