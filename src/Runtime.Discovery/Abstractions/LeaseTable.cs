namespace RequestMigration.Discovery;

/// <summary>
/// Leases owned by an in-process store (mem, file): ids, TTLs, expiry times and the keys bound to each.
/// Not thread-safe: the owning store calls it under its own lock. Time comes from the store's clock.
/// </summary>
internal sealed class LeaseTable(TimeProvider time)
{
    private readonly Dictionary<long, Lease> _leases = [];

    public bool Exists(long leaseId) => _leases.ContainsKey(leaseId);

    public long Grant(TimeSpan ttl)
    {
        long id;
        do
        {
            id = Random.Shared.NextInt64(1, long.MaxValue);
        }
        while (_leases.ContainsKey(id));

        _leases[id] = new Lease(ttl) { ExpiresAt = time.GetUtcNow() + ttl };
        return id;
    }

    /// <summary>Renews a lease for another TTL; false when it does not exist.</summary>
    public bool KeepAlive(long leaseId)
    {
        if (!_leases.TryGetValue(leaseId, out var lease))
        {
            return false;
        }

        lease.ExpiresAt = time.GetUtcNow() + lease.Ttl;
        return true;
    }

    public void Bind(long leaseId, string key)
    {
        if (leaseId != 0 && _leases.TryGetValue(leaseId, out var lease))
        {
            lease.Keys.Add(key);
        }
    }

    public void Unbind(long leaseId, string key)
    {
        if (leaseId != 0 && _leases.TryGetValue(leaseId, out var lease))
        {
            lease.Keys.Remove(key);
        }
    }

    /// <summary>Forgets a lease; returns the keys that were bound to it (the caller deletes them), or null.</summary>
    public HashSet<string>? Remove(long leaseId) => _leases.Remove(leaseId, out var lease) ? lease.Keys : null;

    /// <summary>Ids of leases whose TTL has run out (null when none).</summary>
    public List<long>? Expired()
    {
        var now = time.GetUtcNow();
        List<long>? expired = null;
        foreach (var (id, lease) in _leases)
        {
            if (lease.ExpiresAt <= now)
            {
                (expired ??= []).Add(id);
            }
        }

        return expired;
    }

    public void Clear() => _leases.Clear();

    private sealed class Lease(TimeSpan ttl)
    {
        public TimeSpan Ttl { get; } = ttl;

        public DateTimeOffset ExpiresAt { get; set; }

        public HashSet<string> Keys { get; } = new(StringComparer.Ordinal);
    }
}
