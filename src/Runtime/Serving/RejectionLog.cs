using System.Collections.Concurrent;
using System.Net;

namespace RequestMigration.Serving;

/// <summary>
/// Decides which refusals over a limit are logged: the first for each peer address and limit, then at most one
/// per interval, each saying how many were not logged since. A peer hammering a full server must not turn into
/// a log flood, yet every peer that is refused shows up. Thread-safe.
/// </summary>
internal sealed class RejectionLog(TimeSpan interval, TimeProvider time)
{
    // Beyond this many remembered (peer, limit) pairs, stale ones are forgotten, so spoofed or many peers cannot
    // grow the table without bound.
    private const int MaxEntries = 4096;

    private readonly ConcurrentDictionary<(string Peer, string Limit), Entry> _entries = new();

    /// <summary>The peer's address without its port, so each connection of one peer counts as the same peer.</summary>
    public static string PeerOf(EndPoint? remote) => remote switch
    {
        IPEndPoint ip => ip.Address.ToString(),
        null => "?",
        _ => remote.ToString() ?? "?",
    };

    /// <summary>The peer part of a connection's remote description (<c>address:port</c>).</summary>
    public static string PeerOf(string remote) => IPEndPoint.TryParse(remote, out var ip) ? ip.Address.ToString() : remote;

    /// <summary>Whether to log this refusal; when true, <paramref name="suppressed"/> is how many were not logged since the last one.</summary>
    public bool ShouldLog(string peer, string limit, out long suppressed)
    {
        var now = time.GetTimestamp();
        if (_entries.Count >= MaxEntries)
        {
            Prune(now);
        }

        var entry = _entries.GetOrAdd((peer, limit), static _ => new Entry());
        lock (entry)
        {
            if (entry.Logged && time.GetElapsedTime(entry.LastLogged, now) < interval)
            {
                entry.Suppressed++;
                suppressed = 0;
                return false;
            }

            suppressed = entry.Suppressed;
            entry.Suppressed = 0;
            entry.LastLogged = now;
            entry.Logged = true;
            return true;
        }
    }

    private void Prune(long now)
    {
        foreach (var (key, entry) in _entries)
        {
            if (time.GetElapsedTime(entry.LastLogged, now) >= interval)
            {
                _entries.TryRemove(key, out _);
            }
        }
    }

    private sealed class Entry
    {
        public bool Logged;
        public long LastLogged;
        public long Suppressed;
    }
}
