using System.Net;
using RequestMigration.Serving;

namespace RequestMigration.Transport;

/// <summary>What a server's listeners need besides an address: its limits, its connection count and a clock.</summary>
/// <param name="Limits">The server's limits (backlog, handshake timeout, QUIC stream credit).</param>
/// <param name="Gate">Counts the server's connections, over every listener, against <see cref="ServerLimits.MaxConcurrentConnections"/>.</param>
/// <param name="Time">Clock for handshake timeouts.</param>
/// <param name="OnLimit">Reports a peer stopped by a limit: the limit's name, the peer, and why (the server counts and logs it).</param>
internal sealed record ListenerSettings(ServerLimits Limits, ConnectionGate Gate, TimeProvider Time, Action<string, EndPoint?, string> OnLimit);

/// <summary>
/// Counts one server's open connections against <see cref="ServerLimits.MaxConcurrentConnections"/>; shared by
/// all its listeners. Thread-safe.
/// </summary>
/// <param name="limit">Most connections at once; null for no limit (they are still counted).</param>
internal sealed class ConnectionGate(long? limit)
{
    private long _count;

    /// <summary>Connections admitted and not yet released.</summary>
    public long Count => Volatile.Read(ref _count);

    public long? Limit => limit;

    /// <summary>Admits one more connection unless the limit is reached; the ticket releases it, once.</summary>
    public Ticket? TryEnter()
    {
        var current = Volatile.Read(ref _count);
        while (limit is null || current < limit)
        {
            var seen = Interlocked.CompareExchange(ref _count, current + 1, current);
            if (seen == current)
            {
                return new Ticket(this);
            }

            current = seen;
        }

        return null;
    }

    /// <summary>The text a refused peer is told and the server logs.</summary>
    public string RefusalMessage => $"server busy: {Count} connections open, the limit (MaxConcurrentConnections, DYN_MAX_CONNECTIONS) is {limit}; try another instance";

    /// <summary>One admitted connection; <see cref="Release"/> gives its place back, however often it is called.</summary>
    internal sealed class Ticket(ConnectionGate gate)
    {
        private int _released;

        public void Release()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                Interlocked.Decrement(ref gate._count);
            }
        }
    }
}
