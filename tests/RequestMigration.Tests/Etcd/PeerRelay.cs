using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace RequestMigration.Tests.Etcd;

/// <summary>
/// A TCP relay in front of one etcd member's peer port that can refuse the peer traffic of chosen processes.
/// </summary>
/// <remarks>
/// Every member of a test cluster advertises its relay as its peer URL, so all raft traffic passes through
/// relays. Cutting one member off needs both directions: etcd's raft transport receives a peer's messages on a
/// connection it dialed itself and falls back to plain POSTs when its own stream is gone, so a relay in front of
/// the cut member alone leaves it in the cluster. Each relay therefore finds out which process dialed it
/// (the owner of the client socket, from <c>/proc</c>) and refuses and resets the connections of isolated ones.
/// </remarks>
internal sealed class PeerRelay : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly int _targetPort;
    private readonly Func<IReadOnlyCollection<int>> _candidatePids;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private readonly List<(int? Pid, TcpClient Inbound, TcpClient Outbound)> _open = [];
    private readonly HashSet<int> _isolated = [];
    private readonly Task _accepting;
    private bool _refuseAll;

    /// <param name="targetPort">The member's real peer port.</param>
    /// <param name="candidatePids">The processes that may dial the relay (the cluster's members).</param>
    public PeerRelay(int targetPort, Func<IReadOnlyCollection<int>> candidatePids)
    {
        _targetPort = targetPort;
        _candidatePids = candidatePids;
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accepting = AcceptLoopAsync();
    }

    public int Port { get; }

    public Uri Url => new($"http://127.0.0.1:{Port}");

    /// <summary>Refuses every connection (the member behind the relay is unreachable), resetting open ones.</summary>
    public void RefuseAll()
    {
        lock (_gate)
        {
            _refuseAll = true;
        }

        Reset(_ => true);
    }

    /// <summary>Refuses the connections dialed by process <paramref name="pid"/>, resetting open ones.</summary>
    public void Isolate(int pid)
    {
        lock (_gate)
        {
            _isolated.Add(pid);
        }

        Reset(p => p == pid);
    }

    /// <summary>Lets everything through again.</summary>
    public void Heal()
    {
        lock (_gate)
        {
            _refuseAll = false;
            _isolated.Clear();
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        Reset(_ => true);
        await _accepting;
        _stop.Dispose();
    }

    /// <summary>The process (among <paramref name="pids"/>) that owns the TCP socket 127.0.0.1:<paramref name="localPort"/> connected to 127.0.0.1:<paramref name="remotePort"/>.</summary>
    internal static int? OwnerOf(int localPort, int remotePort, IReadOnlyCollection<int> pids)
    {
        var inode = FindInode(localPort, remotePort);
        if (inode is null)
        {
            return null;
        }

        var link = $"socket:[{inode}]";
        foreach (var pid in pids)
        {
            try
            {
                foreach (var fd in Directory.EnumerateFileSystemEntries($"/proc/{pid}/fd"))
                {
                    try
                    {
                        if (new FileInfo(fd).LinkTarget == link)
                        {
                            return pid;
                        }
                    }
                    catch (IOException)
                    {
                        // The descriptor closed meanwhile.
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                // The process exited.
            }
        }

        return null;
    }

    private static string? FindInode(int localPort, int remotePort)
    {
        // /proc/net/tcp: "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...", addresses as
        // little-endian hex IPv4 and big-endian hex port.
        var local = $"0100007F:{localPort.ToString("X4", CultureInfo.InvariantCulture)}";
        var remote = $"0100007F:{remotePort.ToString("X4", CultureInfo.InvariantCulture)}";
        foreach (var line in System.IO.File.ReadLines("/proc/net/tcp").Skip(1))
        {
            var f = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (f.Length > 9 && f[1] == local && f[2] == remote)
            {
                return f[9];
            }
        }

        return null;
    }

    private static void Abort(TcpClient client)
    {
        try
        {
            // Reset rather than close, so the peer notices at once. (A client disposed already has no socket.)
            if (client.Client is { } socket)
            {
                socket.LingerState = new LingerOption(true, 0);
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }

        client.Dispose();
    }

    private static async Task PipeAsync(Stream from, Stream to, CancellationToken ct)
    {
        try
        {
            await from.CopyToAsync(to, ct);
        }
        catch (Exception ex) when (ex is IOException or ObjectDisposedException or OperationCanceledException or SocketException)
        {
        }
    }

    private bool Refuses(int? pid)
    {
        lock (_gate)
        {
            return _refuseAll || (pid is { } p && _isolated.Contains(p));
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient inbound;
            try
            {
                inbound = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            _ = Task.Run(() => RelayAsync(inbound));
        }
    }

    private async Task RelayAsync(TcpClient inbound)
    {
        int? pid;
        try
        {
            pid = OwnerOf(((IPEndPoint)inbound.Client.RemoteEndPoint!).Port, Port, _candidatePids());
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException or IOException)
        {
            Abort(inbound);
            return;
        }

        if (Refuses(pid))
        {
            Abort(inbound);
            return;
        }

        var outbound = new TcpClient();
        try
        {
            await outbound.ConnectAsync(IPAddress.Loopback, _targetPort, _stop.Token);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            Abort(inbound);
            outbound.Dispose();
            return;
        }

        var entry = (pid, inbound, outbound);
        lock (_gate)
        {
            _open.Add(entry);
        }

        if (Refuses(pid))
        {
            // Isolated while connecting.
            Reset(p => p == pid);
            return;
        }

        using var both = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        var up = PipeAsync(inbound.GetStream(), outbound.GetStream(), both.Token);
        var down = PipeAsync(outbound.GetStream(), inbound.GetStream(), both.Token);
        await Task.WhenAny(up, down);
        await both.CancelAsync();
        await Task.WhenAll(up, down);
        lock (_gate)
        {
            _open.Remove(entry);
        }

        Abort(inbound);
        Abort(outbound);
    }

    private void Reset(Func<int?, bool> which)
    {
        List<(int? Pid, TcpClient Inbound, TcpClient Outbound)> cut;
        lock (_gate)
        {
            cut = [.. _open.Where(c => which(c.Pid))];
            _open.RemoveAll(c => which(c.Pid));
        }

        foreach (var (_, inbound, outbound) in cut)
        {
            Abort(inbound);
            Abort(outbound);
        }
    }
}
