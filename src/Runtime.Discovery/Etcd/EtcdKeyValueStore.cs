using System.Runtime.CompilerServices;
using System.Threading.Channels;
using dotnet_etcd;
using dotnet_etcd.interfaces;
using Etcdserverpb;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace RequestMigration.Discovery.Etcd;

/// <summary>
/// The etcd backend (etcd v3 API through dotnet-etcd). Keys are bound to etcd leases, revisions are etcd's,
/// and watches resume from the last delivered revision after a broken connection.
/// </summary>
/// <remarks>
/// <para>
/// Every call carries a deadline of <see cref="EtcdStoreOptions.CallTimeout"/> and the caller's token, so a dead
/// etcd fails fast with <see cref="StoreUnavailableException"/> naming the endpoints. Lease keep-alives and watch
/// streams also require a leader (etcd's <c>hasleader</c> metadata, as its own client sends), so a member that lost
/// its leader, such as one cut off from its peers, refuses a renewal at once and cancels a watch instead of letting
/// it go silently stale. Other calls do not, so that they wait out a normal leader election within their deadline;
/// on a member cut off from its peers they time out and move on like any other failure.
/// </para>
/// <para>
/// With several endpoints each process starts at a random one, so one bad member never has the whole fleet on it.
/// The deadline is shared out over the endpoints; any failure of an endpoint (refused, timed out, no leader,
/// or any answer other than one about the request itself) moves the call on to the next one, and the failed
/// endpoint is skipped for <see cref="EtcdStoreOptions.EndpointQuarantine"/> while others answer. The endpoint
/// that answered is asked first next time. A watch moves to another endpoint the same way when its stream fails.
/// </para>
/// <para>
/// A watch reads the prefix, reports it, then watches from the next revision on a raw gRPC watch stream whose
/// creation etcd has confirmed. Events are handed to the consumer through a channel, so consumer code never runs
/// on the receive loop. A broken watch is re-established with backoff and resumes after the last revision it
/// delivered; when that revision has been compacted it reads the prefix again and reports the difference.
/// </para>
/// <para>
/// etcd rounds lease TTLs up to whole seconds and enforces a minimum of about 2 s; a key bound to an expired lease
/// is removed about 0.5 s after the TTL. When etcd restarts it restores leases with a fresh TTL.
/// </para>
/// </remarks>
public sealed partial class EtcdKeyValueStore : IKeyValueStore
{
    // Enough to absorb a burst (a resync of a large prefix) without stalling the stream; beyond it the pump
    // waits for the consumer, which pauses reading from etcd rather than growing memory without bound.
    private const int WatchBufferCapacity = 1024;

    private readonly EtcdStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Node[] _nodes;
    private readonly EtcdEndpointSelector _selector;
    private readonly string _endpointList;
    private readonly CancellationTokenSource _disposing = new();
    private readonly Lock _gate = new();
    private readonly HashSet<Task> _pumps = [];
    private bool _disposed;

    // The error of the last watch that failed, until one is confirmed again (UnreachableReason).
    private string? _unreachable;

    /// <summary>Creates the store; connections are opened lazily by the first call.</summary>
    /// <param name="options">Endpoints and timeouts; validated here.</param>
    /// <param name="timeProvider">Clock for the watch retry backoff and the endpoint quarantine (default: the system clock).</param>
    /// <param name="logger">Receives outage and resync messages.</param>
    /// <exception cref="ArgumentException">The options are invalid.</exception>
    public EtcdKeyValueStore(EtcdStoreOptions options, TimeProvider? timeProvider = null, ILogger<EtcdKeyValueStore>? logger = null)
        : this(options, timeProvider, logger, Random.Shared)
    {
    }

    /// <summary>Creates the store with the randomness that picks the first endpoint (tests choose it).</summary>
    internal EtcdKeyValueStore(EtcdStoreOptions options, TimeProvider? timeProvider, ILogger<EtcdKeyValueStore>? logger, Random random)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        _time = timeProvider ?? TimeProvider.System;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _nodes = [.. options.Endpoints.Select(e => new Node(e, options))];
        _selector = new EtcdEndpointSelector(_nodes.Length, options.EndpointQuarantine, _time, random);
        _endpointList = string.Join(", ", _nodes.Select(n => n.Name));
    }

    /// <inheritdoc />
    public string Name => "etcd";

    /// <inheritdoc />
    public string Description => $"etcd at {_endpointList}";

    /// <inheritdoc />
    public string? UnreachableReason => Volatile.Read(ref _unreachable);

    /// <summary>etcd grants lease ids cluster-wide, so they identify instances.</summary>
    public bool LeaseIdsAreShared => true;

    /// <summary>The endpoints in use, as <c>scheme://host:port</c>.</summary>
    public IReadOnlyList<string> Endpoints => [.. _nodes.Select(n => n.Name)];

    /// <summary>The endpoint the next call asks first (an index into <see cref="Endpoints"/>).</summary>
    internal int PreferredEndpoint => _selector.Order()[0];

    /// <inheritdoc />
    public async ValueTask<KeyValueEntry?> GetAsync(string key, CancellationToken cancellationToken = default)
    {
        KeyValidation.ThrowIfInvalid(key);
        var request = new RangeRequest { Key = EtcdKeyRange.Key(key) };
        var response = await CallAsync(
            $"get '{key}'",
            (n, deadline, ct) => n.Client.GetAsync(request, null, deadline, ct),
            cancellationToken).ConfigureAwait(false);
        return response.Kvs.Count == 0 ? null : ToEntry(response.Kvs[0]);
    }

    /// <inheritdoc />
    public async ValueTask<IReadOnlyList<KeyValueEntry>> ListAsync(string prefix, CancellationToken cancellationToken = default)
    {
        var (entries, _) = await RangeAsync(prefix, cancellationToken).ConfigureAwait(false);
        return entries;
    }

    /// <inheritdoc />
    public async ValueTask PutAsync(string key, ReadOnlyMemory<byte> value, long leaseId = 0, CancellationToken cancellationToken = default)
    {
        KeyValidation.ThrowIfInvalid(key);
        var request = new PutRequest { Key = EtcdKeyRange.Key(key), Value = ByteString.CopyFrom(value.Span), Lease = leaseId };
        await CallAsync(
            $"put '{key}'",
            async (n, deadline, ct) =>
            {
                try
                {
                    return await n.Client.PutAsync(request, null, deadline, ct).ConfigureAwait(false);
                }
                catch (RpcException ex) when (IsLeaseNotFound(ex))
                {
                    throw new LeaseNotFoundException(leaseId);
                }
            },
            cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public async ValueTask<bool> DeleteAsync(string key, CancellationToken cancellationToken = default)
    {
        KeyValidation.ThrowIfInvalid(key);
        var request = new DeleteRangeRequest { Key = EtcdKeyRange.Key(key) };
        var response = await CallAsync(
            $"delete '{key}'",
            (n, deadline, ct) => n.Client.DeleteAsync(request, null, deadline, ct),
            cancellationToken).ConfigureAwait(false);
        return response.Deleted > 0;
    }

    /// <inheritdoc />
    /// <remarks>The TTL is rounded up to whole seconds; etcd may raise it to its minimum (about 2 s).</remarks>
    public async ValueTask<long> GrantLeaseAsync(TimeSpan ttl, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(ttl, TimeSpan.Zero);
        var request = new LeaseGrantRequest { TTL = (long)Math.Ceiling(ttl.TotalSeconds) };
        var response = await CallAsync(
            $"grant lease ({request.TTL} s)",
            (n, deadline, ct) => n.Client.LeaseGrantAsync(request, null, deadline, ct),
            cancellationToken).ConfigureAwait(false);
        if (!string.IsNullOrEmpty(response.Error))
        {
            throw new StoreUnavailableException($"etcd at {_endpointList}: grant lease ({request.TTL} s) failed: {response.Error}");
        }

        return response.ID;
    }

    /// <inheritdoc />
    public async ValueTask<bool> KeepAliveAsync(long leaseId, CancellationToken cancellationToken = default)
    {
        // One request on a short-lived stream rather than a long-lived keep-alive stream: the caller decides the
        // cadence, and each renewal gets its own deadline, so a dead etcd is reported instead of hanging a stream.
        // The stream requires a leader: a member cut off from its peers cannot renew the lease (the side with
        // quorum lets it expire) and must refuse, so that the renewal moves on to another member.
        var ttl = await CallAsync(
            $"keep-alive of lease {leaseId:x}",
            async (n, deadline, ct) =>
            {
                using var call = n.Connection.LeaseClient.LeaseKeepAlive(EtcdErrors.RequireLeader(), deadline, ct);
                await call.RequestStream.WriteAsync(new LeaseKeepAliveRequest { ID = leaseId }, ct).ConfigureAwait(false);
                if (!await call.ResponseStream.MoveNext(ct).ConfigureAwait(false))
                {
                    throw new RpcException(new Status(StatusCode.Unavailable, "the keep-alive stream closed without an answer"));
                }

                var answer = call.ResponseStream.Current.TTL;
                await call.RequestStream.CompleteAsync().ConfigureAwait(false);
                return answer;
            },
            cancellationToken).ConfigureAwait(false);

        // etcd answers TTL 0 (or less) for a lease it no longer has.
        return ttl > 0;
    }

    /// <inheritdoc />
    public async ValueTask RevokeLeaseAsync(long leaseId, CancellationToken cancellationToken = default)
    {
        if (leaseId == 0)
        {
            return;
        }

        var request = new LeaseRevokeRequest { ID = leaseId };
        await CallAsync(
            $"revoke lease {leaseId:x}",
            async (n, deadline, ct) =>
            {
                try
                {
                    await n.Client.LeaseRevokeAsync(request, null, deadline, ct).ConfigureAwait(false);
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
                {
                    // Already expired or revoked: the goal is reached.
                }

                return true;
            },
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// How long a lease has left unless it is renewed, as etcd reports it (whole seconds, rounded up), or
    /// <see langword="null"/> when the lease no longer exists (it expired or was revoked). Reads only: it
    /// never renews the lease, so tools can watch other processes' leases without keeping them alive.
    /// </summary>
    /// <param name="leaseId">The lease, e.g. the <see cref="KeyValueEntry.LeaseId"/> of a key.</param>
    /// <param name="cancellationToken">Abandons the call.</param>
    /// <exception cref="StoreUnavailableException">No endpoint answered; the message names them.</exception>
    public async ValueTask<TimeSpan?> GetLeaseTimeToLiveAsync(long leaseId, CancellationToken cancellationToken = default)
    {
        if (leaseId == 0)
        {
            return null;
        }

        var request = new LeaseTimeToLiveRequest { ID = leaseId };
        var ttl = await CallAsync(
            $"time-to-live of lease {leaseId:x}",
            async (n, deadline, ct) =>
            {
                try
                {
                    return (await n.Client.LeaseTimeToLiveAsync(request, null, deadline, ct).ConfigureAwait(false)).TTL;
                }
                catch (RpcException ex) when (ex.StatusCode == StatusCode.NotFound)
                {
                    // Some etcd versions answer NotFound where others answer TTL -1: the lease is gone either way.
                    return -1;
                }
            },
            cancellationToken).ConfigureAwait(false);
        return ttl < 0 ? null : TimeSpan.FromSeconds(ttl);
    }

    /// <inheritdoc />
    public IAsyncEnumerable<WatchEvent> WatchAsync(string prefix, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        ThrowIfDisposed();
        return WatchCoreAsync(prefix, cancellationToken);
    }

    /// <summary>Stops every watch (their enumerations end) and closes the connections. Leases are left to expire.</summary>
    public async ValueTask DisposeAsync()
    {
        Task[] pumps;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            pumps = [.. _pumps];
        }

        await _disposing.CancelAsync().ConfigureAwait(false);
        try
        {
            await Task.WhenAll(pumps).WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutException)
        {
            // A pump stuck past its cancellation is abandoned; closing the channels below ends its stream.
        }

        foreach (var node in _nodes)
        {
            node.Dispose();
        }

        _disposing.Dispose();
    }

    private async Task<(IReadOnlyList<KeyValueEntry> Entries, long Revision)> RangeAsync(string prefix, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        var (key, end) = EtcdKeyRange.Prefix(prefix);
        var request = new RangeRequest
        {
            Key = key,
            RangeEnd = end,
            SortOrder = RangeRequest.Types.SortOrder.Ascend,
            SortTarget = RangeRequest.Types.SortTarget.Key,
        };
        var response = await CallAsync(
            $"list '{prefix}'",
            (n, deadline, ct) => n.Client.GetAsync(request, null, deadline, ct),
            cancellationToken).ConfigureAwait(false);
        var entries = new List<KeyValueEntry>(response.Kvs.Count);
        foreach (var kv in response.Kvs)
        {
            entries.Add(ToEntry(kv));
        }

        return (entries, response.Header.Revision);
    }

    /// <summary>
    /// Runs one etcd call under the store's deadline, trying the endpoints in the selector's order. A failure of
    /// the endpoint moves on to the next one and puts the failed one in quarantine; an answer about the request
    /// itself is reported at once.
    /// </summary>
    private async Task<T> CallAsync<T>(string operation, Func<Node, DateTime, CancellationToken, Task<T>> call, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposing.Token);

        // gRPC deadlines are instants checked against the real clock (and sent to etcd as a timeout), so they
        // come from DateTime.UtcNow, never from the injected TimeProvider, which a test may have frozen.
        var end = DateTime.UtcNow + _options.CallTimeout;
        var order = _selector.Order();
        var failures = new List<string>(order.Length);
        RpcException? last = null;
        var timedOut = false;
        for (var i = 0; i < order.Length; i++)
        {
            var index = order[i];
            var node = _nodes[index];
            var now = DateTime.UtcNow;
            if (now >= end)
            {
                timedOut = true;
                break;
            }

            // Share what is left over the endpoints not tried yet, so one black-holed endpoint cannot use up
            // the whole budget before a healthy one is asked.
            var deadline = now + ((end - now) / (order.Length - i));
            try
            {
                var result = await call(node, deadline, linked.Token).ConfigureAwait(false);
                _selector.Succeeded(index);
                return result;
            }
            catch (Exception ex) when (linked.IsCancellationRequested && ex is RpcException or OperationCanceledException)
            {
                cancellationToken.ThrowIfCancellationRequested();
                throw new ObjectDisposedException(nameof(EtcdKeyValueStore), ex);
            }
            catch (RpcException ex) when (EtcdErrors.IsEndpointFailure(ex.StatusCode))
            {
                last = ex;
                timedOut |= EtcdErrors.IsTimeout(ex);
                failures.Add($"{node.Name}: {EtcdErrors.Describe(ex)}");
                EndpointFailed(index, $"{operation}: {EtcdErrors.Describe(ex)}");
            }
            catch (RpcException ex)
            {
                // A definite answer about the request: the endpoint works, another one would say the same.
                _selector.Succeeded(index);
                throw new StoreUnavailableException($"etcd at {node.Name}: {operation} failed: {EtcdErrors.Describe(ex)}", ex);
            }
        }

        var detail = failures.Count == 0 ? "no endpoint was tried" : string.Join("; ", failures);
        var outcome = timedOut
            ? $"{operation} got no answer within {_options.CallTimeout.TotalSeconds:0.###} s"
            : _nodes.Length == 1 ? $"{operation} failed" : $"{operation} failed on every endpoint";
        throw new StoreUnavailableException($"etcd at {_endpointList} is unavailable: {outcome} ({detail})", last);
    }

    /// <summary>Quarantines a failed endpoint, reporting it once per bad spell when there are others to use instead.</summary>
    private void EndpointFailed(int index, string reason)
    {
        if (_selector.Failed(index) && _nodes.Length > 1)
        {
            LogEndpointFailed(_nodes[index].Name, reason, _options.EndpointQuarantine.TotalSeconds);
        }
    }

    private async IAsyncEnumerable<WatchEvent> WatchCoreAsync(string prefix, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        // The pump owns the gRPC stream and only ever writes here; the consumer reads on its own continuation.
        // AllowSynchronousContinuations stays off so a write never runs the consumer inline on the pump, where
        // slow consumer code would stall the stream and starting another watch from it could deadlock.
        var events = Channel.CreateBounded<WatchEvent>(new BoundedChannelOptions(WatchBufferCapacity)
        {
            SingleReader = true,
            SingleWriter = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _disposing.Token);
        Task pump;
        lock (_gate)
        {
            ThrowIfDisposed();
            pump = Task.Run(() => PumpAsync(prefix, events.Writer, stop.Token), CancellationToken.None);
            _pumps.Add(pump);
        }

        try
        {
            while (await events.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                while (events.Reader.TryRead(out var ev))
                {
                    yield return ev;
                }
            }
        }
        finally
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await pump.ConfigureAwait(false);
            lock (_gate)
            {
                _pumps.Remove(pump);
            }
        }
    }

    /// <summary>Keeps one prefix watched until stopped: snapshot, then the stream, re-established after every failure.</summary>
    private async Task PumpAsync(string prefix, ChannelWriter<WatchEvent> writer, CancellationToken stop)
    {
        var state = new EtcdWatchState();
        var resync = true;
        var delay = _options.WatchRetryInitialDelay;
        var interrupted = false;
        Exception? fault = null;
        try
        {
            while (!stop.IsCancellationRequested)
            {
                var index = -1;
                try
                {
                    if (resync)
                    {
                        var (entries, revision) = await RangeAsync(prefix, stop).ConfigureAwait(false);
                        var resyncing = state.Synced;
                        var diff = state.ApplySnapshot(entries, revision);
                        if (resyncing)
                        {
                            LogResynced(prefix, revision, diff.Count);
                        }

                        await WriteAllAsync(writer, diff, stop).ConfigureAwait(false);
                        resync = false;
                    }

                    // Chosen after the read, which may just have found out which endpoint answers.
                    index = _selector.Order()[0];
                    var node = _nodes[index];
                    var confirmedIndex = index;
                    var onConfirmed = () =>
                    {
                        _selector.Succeeded(confirmedIndex);
                        Volatile.Write(ref _unreachable, null);
                        delay = _options.WatchRetryInitialDelay;
                        if (interrupted)
                        {
                            interrupted = false;
                            LogWatchResumed(prefix, node.Name, state.Revision + 1);
                        }
                    };
                    resync = await StreamAsync(node, prefix, state, writer, onConfirmed, stop).ConfigureAwait(false);
                }
                catch (Exception ex) when (!stop.IsCancellationRequested)
                {
                    Volatile.Write(ref _unreachable, ex.Message);
                    if (!interrupted)
                    {
                        // Once per outage: the retries below stay quiet until the watch is confirmed again.
                        interrupted = true;
                        LogWatchInterrupted(prefix, index < 0 ? _endpointList : _nodes[index].Name, ex.Message);
                    }

                    if (index >= 0)
                    {
                        // The read already went through every endpoint; only a broken stream points at this one.
                        // The next attempt goes to another endpoint, and so does everything else for a while.
                        EndpointFailed(index, $"watch of '{prefix}': {ex.Message}");
                    }

                    await Task.Delay(delay, _time, stop).ConfigureAwait(false);
                    delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, _options.WatchRetryMaxDelay.Ticks));
                }
            }
        }
        catch (Exception) when (stop.IsCancellationRequested)
        {
            // Stopped (the consumer left, or the store was disposed): gRPC reports that as an RpcException with
            // status Cancelled rather than an OperationCanceledException. Either way the watch just ends.
        }
        catch (Exception ex)
        {
            // Only a defect lands here (every etcd failure is retried above); surface it to the consumer.
            fault = ex;
        }
        finally
        {
            writer.TryComplete(fault);
        }
    }

    /// <summary>
    /// Opens a watch stream from the revision after the last delivered one and relays its events until it breaks.
    /// Returns <see langword="true"/> when etcd reports that revision compacted, so the caller must read the prefix
    /// again; throws when the stream fails.
    /// </summary>
    private async Task<bool> StreamAsync(Node node, string prefix, EtcdWatchState state, ChannelWriter<WatchEvent> writer, Action onConfirmed, CancellationToken stop)
    {
        var (key, end) = EtcdKeyRange.Prefix(prefix);
        var startRevision = state.Revision + 1;

        // No deadline on the stream itself: it lives as long as the watch. HTTP/2 pings notice a dead peer.
        using var call = node.Connection.WatchClient.Watch(EtcdErrors.RequireLeader(), null, stop);
        var create = new WatchCreateRequest { Key = key, RangeEnd = end, StartRevision = startRevision };
        await call.RequestStream.WriteAsync(new WatchRequest { CreateRequest = create }, stop).ConfigureAwait(false);

        // Wait for etcd to confirm the watch (the library helper does not), bounded like any other call so a
        // half-open connection is noticed instead of waiting forever for events.
        using (var confirm = CancellationTokenSource.CreateLinkedTokenSource(stop))
        {
            confirm.CancelAfter(_options.CallTimeout);
            bool answered;
            try
            {
                answered = await call.ResponseStream.MoveNext(confirm.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (!stop.IsCancellationRequested && confirm.IsCancellationRequested && ex is RpcException or OperationCanceledException)
            {
                throw new StoreUnavailableException($"etcd at {node.Name}: watch of '{prefix}' not confirmed within {_options.CallTimeout.TotalSeconds:0.###} s", ex);
            }

            if (!answered)
            {
                throw new StoreUnavailableException($"etcd at {node.Name} closed the watch of '{prefix}' before confirming it");
            }
        }

        var first = call.ResponseStream.Current;
        if (first.Canceled)
        {
            return IsCompacted(first, node, prefix, startRevision);
        }

        if (!first.Created)
        {
            throw new StoreUnavailableException($"etcd at {node.Name}: unexpected first answer to the watch of '{prefix}'");
        }

        onConfirmed();
        var changes = new List<EtcdChange>();
        while (await call.ResponseStream.MoveNext(stop).ConfigureAwait(false))
        {
            var response = call.ResponseStream.Current;
            if (response.Canceled)
            {
                return IsCompacted(response, node, prefix, startRevision);
            }

            if (response.Events.Count == 0)
            {
                continue;
            }

            changes.Clear();
            foreach (var e in response.Events)
            {
                var put = e.Type == Mvccpb.Event.Types.EventType.Put;
                changes.Add(new EtcdChange(
                    put ? WatchEventKind.Put : WatchEventKind.Delete,
                    e.Kv.Key.ToStringUtf8(),
                    put ? e.Kv.Value.Memory : ReadOnlyMemory<byte>.Empty,
                    e.Kv.ModRevision));
            }

            await WriteAllAsync(writer, state.ApplyBatch(changes), stop).ConfigureAwait(false);
        }

        throw new StoreUnavailableException($"etcd at {node.Name} ended the watch of '{prefix}'");
    }

    private bool IsCompacted(WatchResponse response, Node node, string prefix, long startRevision)
    {
        if (response.CompactRevision > 0)
        {
            LogCompacted(prefix, startRevision, response.CompactRevision);
            return true;
        }

        var reason = string.IsNullOrEmpty(response.CancelReason) ? "no reason given" : response.CancelReason;
        throw new StoreUnavailableException($"etcd at {node.Name} cancelled the watch of '{prefix}': {reason}");
    }

    private static async ValueTask WriteAllAsync(ChannelWriter<WatchEvent> writer, List<WatchEvent> events, CancellationToken stop)
    {
        foreach (var ev in events)
        {
            await writer.WriteAsync(ev, stop).ConfigureAwait(false);
        }
    }

    private static KeyValueEntry ToEntry(Mvccpb.KeyValue kv) => new(kv.Key.ToStringUtf8(), kv.Value.Memory, kv.ModRevision, kv.Lease);

    private static bool IsLeaseNotFound(RpcException ex) =>
        ex.StatusCode == StatusCode.NotFound && ex.Status.Detail.Contains("lease not found", StringComparison.OrdinalIgnoreCase);

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    [LoggerMessage(Level = LogLevel.Warning, Message = "etcd store: watch of '{Prefix}' via {Endpoint} interrupted ({Reason}); retrying until etcd is back")]
    private partial void LogWatchInterrupted(string prefix, string endpoint, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "etcd store: watch of '{Prefix}' re-established via {Endpoint} from revision {Revision}")]
    private partial void LogWatchResumed(string prefix, string endpoint, long revision);

    [LoggerMessage(Level = LogLevel.Information, Message = "etcd store: cannot resume the watch of '{Prefix}' at revision {Revision} (compacted up to {CompactRevision}); reading the prefix again")]
    private partial void LogCompacted(string prefix, long revision, long compactRevision);

    [LoggerMessage(Level = LogLevel.Information, Message = "etcd store: {Endpoint} failed ({Reason}); the other endpoints are asked first for the next {Seconds} s")]
    private partial void LogEndpointFailed(string endpoint, string reason, double seconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "etcd store: watch of '{Prefix}' resynchronised at revision {Revision}; {Count} change(s) reported")]
    private partial void LogResynced(string prefix, long revision, int count);

    /// <summary>One endpoint: its own channel, so a failed endpoint cannot hold up the others.</summary>
    private sealed class Node : IDisposable
    {
        private readonly GrpcChannel _channel;

        public Node(Uri endpoint, EtcdStoreOptions options)
        {
            // Scheme, host and port only: user information in the URI is a secret that must not reach logs.
            Name = $"{endpoint.Scheme}://{endpoint.Authority}";
            var handler = new SocketsHttpHandler
            {
                ConnectTimeout = options.CallTimeout,
                PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
                KeepAlivePingDelay = options.KeepAlivePingDelay,
                KeepAlivePingTimeout = TimeSpan.FromTicks(Math.Max(options.CallTimeout.Ticks, TimeSpan.TicksPerSecond * 5)),
                KeepAlivePingPolicy = HttpKeepAlivePingPolicy.WithActiveRequests,
                EnableMultipleHttp2Connections = true,
            };

            // No service config, hence no gRPC retry policy: retries would stretch a call past its deadline
            // budget (the library's own default retries a dead endpoint for about 4.4 s). The reconnect
            // backoff is capped like the watch retries; gRPC's default cap of 120 s would keep a restarted
            // etcd unused for up to two minutes after a long outage.
            _channel = GrpcChannel.ForAddress(endpoint, new GrpcChannelOptions
            {
                HttpHandler = handler,
                DisposeHttpClient = true,
                InitialReconnectBackoff = options.WatchRetryInitialDelay,
                MaxReconnectBackoff = options.WatchRetryMaxDelay,
            });
            Client = new EtcdClient(_channel.CreateCallInvoker());
            Connection = Client.GetConnection();
        }

        public string Name { get; }

        public EtcdClient Client { get; }

        public IConnection Connection { get; }

        public void Dispose()
        {
            Client.Dispose();
            _channel.Dispose();
        }
    }
}
