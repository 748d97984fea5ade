using Microsoft.Extensions.Logging;
using RequestMigration;
using RequestMigration.Discovery.Instances;
using RequestMigration.Discovery.Memory;
using RequestMigration.LoadBalancing;
using RequestMigration.Routing;
using RequestMigration.Serving;

namespace Examples.ConnectionSwap;

/// <summary>
/// The director. USER port: <c>generate</c> (a client's token stream, continued on the next worker when one
/// fails) and <c>assign</c> (direct mode). MGMT port: worker registration and heartbeats, and health checks.
/// Its USER endpoints are registered in the shared discovery store (<c>DYN_STORE_KV</c>), so clients find
/// every director and a second director takes over the sessions of one that dies.
/// </summary>
internal sealed class Director(Settings settings, ILoggerFactory loggerFactory)
{
    /// <summary>How long a stream waits for a worker to come back before the client is told there is none.</summary>
    private static readonly TimeSpan WorkerGrace = TimeSpan.FromSeconds(1);

    private readonly ILogger _logger = loggerFactory.CreateLogger("director");
    private readonly string _name = settings.DirectorName;
    private readonly CancellationTokenSource _stopping = new();
    private WorkerPool _pool = null!;
    private PushRouter<GenerateRequest, TokenItem> _workers = null!;
    private long _streams;
    private int _nextAssignment;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var userAddress = settings.DirectorUser;
        var mgmtAddress = settings.DirectorMgmt;
        var userOptions = Plumbing.Options(userAddress);
        var mgmtOptions = Plumbing.Options(mgmtAddress);
        var routerOptions = Plumbing.RouterOptions(heartbeats: true);

        // The runtime does the failover: continue a broken stream on the least loaded worker, from where it
        // stopped; ping workers with live streams so a hung one is left, not waited for.
        routerOptions.Migration = true;
        routerOptions.LoadBalancingPolicy = LoadBalancingPolicies.LeastConnections;
        routerOptions.Filter = InstanceTags.Parse($"{Tags.Role}=worker", "filter");
        routerOptions.MaxAttempts = 10;
        routerOptions.MaxRetryWait = WorkerGrace;
        if (routerOptions.Heartbeat is { } heartbeat)
        {
            heartbeat.Observer = new HeartbeatLog(_logger, null, "worker", LogLevel.Debug);
        }

        // The pool lives in a store of the director's own: only workers that registered with this director's
        // MGMT port, and only while their heartbeats keep their leases alive.
        await using var poolStore = new MemoryKeyValueStore();
        await using var mgmt = new RequestMigrationRuntime(mgmtOptions, loggerFactory, store: poolStore);
        await using var user = new RequestMigrationRuntime(userOptions, loggerFactory);
        _pool = new WorkerPool(poolStore, _name, _logger);
        _workers = mgmt.CreateRouter<GenerateRequest, TokenItem>(Endpoints.WorkerGenerate, routerOptions);
        var watch = _pool.WatchAsync(_workers.Instances.WatchEventsAsync(cancellationToken), () => _workers.Instances.Available.Count);

        var mgmtServer = mgmt.CreateServer(new ServerOptions { Tags = Tags.For("director-mgmt", _name) })
            .AddEndpoint<WorkerRegistration, RegistrationReply>(Endpoints.DirectorRegister, RegisterAsync)
            .AddEndpoint<HealthRequest, HealthReply>(Endpoints.DirectorHealth, HealthAsync);
        await Plumbing.StartAsync(mgmtServer, mgmtAddress, Settings.DirectorMgmtAddr, cancellationToken).ConfigureAwait(false);

        var userServer = user.CreateServer(new ServerOptions { Tags = Tags.For("director", _name) })
            .AddEndpoint<GenerateRequest, TokenItem>(Endpoints.DirectorGenerate, GenerateAsync)
            .AddEndpoint<AssignRequest, Assignment>(Endpoints.DirectorAssign, AssignAsync);
        await Plumbing.StartAsync(userServer, userAddress, Settings.DirectorUserAddr, cancellationToken).ConfigureAwait(false);

        Log.DirectorReady(_logger, _name, userServer.Address, mgmtServer.Address, userServer.Transport, user.Store.Name);
        if (user.Store.Name == "mem")
        {
            Log.PrivateStore(_logger, _name, Settings.DirectorTarget);
        }

        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        Log.Stopping(_logger, "director", _name);

        // Stop taking clients first (from here on a new stream is told "shutting down" and goes elsewhere),
        // then cut the streams in progress: their clients continue them through another director.
        var stopped = userServer.StopAsync(CancellationToken.None);
        await _stopping.CancelAsync().ConfigureAwait(false);
        await stopped.ConfigureAwait(false);
        await watch.ConfigureAwait(false);
    }

    /// <summary>
    /// A client's stream: tokens from the workers through a migrating router. A worker that fails (crash,
    /// simulated failure, heartbeat) is left mid-stream and the next one continues from the next sequence number.
    /// </summary>
    private async IAsyncEnumerable<TokenItem> GenerateAsync(GenerateRequest request, RequestContext context)
    {
        var ct = context.CancellationToken;
        var streamId = Interlocked.Increment(ref _streams);
        var connection = Plumbing.Sanitize(request.ConnectionId);
        Plumbing.Validate(request);

        // A resumed attempt (the client's stream came over from another director) continues after what the
        // client already has: the request's start plus the items the client's router counted.
        var last = request.StartAfter + context.ResumeFrom;
        Log.ClientStream(_logger, streamId, connection, last + 1, context.Attempt);
        var observer = new MigrationLog(_logger, streamId, connection, () => last);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct, _stopping.Token);
        var graced = false;
        while (true)
        {
            string? failure = null;
            var items = _workers.GenerateAsync(request with { StartAfter = last }, observer, stop.Token).GetAsyncEnumerator(stop.Token);
            try
            {
                while (true)
                {
                    TokenItem? item;
                    try
                    {
                        if (!await items.MoveNextAsync().ConfigureAwait(false))
                        {
                            break;
                        }

                        item = items.Current.Data;
                    }
                    catch (EndpointFailedException ex)
                    {
                        throw new EndpointErrorException($"the worker rejected the stream: {ex.Message}");
                    }
                    catch (LocalConfigurationException ex)
                    {
                        // The director's own setup (TLS trust), not a worker shortage: say so rather than "no worker".
                        throw new EndpointErrorException($"director {_name} cannot reach workers: {ex.Message}");
                    }
                    catch (OperationCanceledException) when (_stopping.IsCancellationRequested && !ct.IsCancellationRequested)
                    {
                        // Cut like a crash: the client's router continues the session through another director.
                        Log.HandingOverClient(_logger, streamId, connection, last);
                        throw new AbortStreamException($"director {_name} is shutting down");
                    }
                    catch (RoutingException ex)
                    {
                        failure = ex.Message;
                        break;
                    }

                    if (item is null)
                    {
                        continue;
                    }

                    last = item.Sequence;
                    yield return item;
                }
            }
            finally
            {
                await items.DisposeAsync().ConfigureAwait(false);
            }

            if (failure is null)
            {
                Log.StreamComplete(_logger, streamId, connection, last);
                yield break;
            }

            // No worker to continue on. A stream that starts while the pool is momentarily empty gets the same
            // short grace a migrating one gets from the router (MaxRetryWait).
            if (!graced && _workers.Instances.Available.Count == 0)
            {
                graced = true;
                try
                {
                    await _workers.WaitForInstancesAsync(WorkerGrace, stop.Token).ConfigureAwait(false);
                    continue;
                }
                catch (TimeoutException)
                {
                }
            }

            var pool = await DescribePoolAsync().ConfigureAwait(false);
            Log.NoWorker(_logger, streamId, connection, last, pool);

            // The client waits and asks again from the next sequence number: nothing is lost.
            throw new EndpointErrorException($"no worker available: {pool}");
        }
    }

    /// <summary>Direct mode: picks a worker for the client, which then streams from it itself.</summary>
    private async IAsyncEnumerable<Assignment> AssignAsync(AssignRequest request, RequestContext context)
    {
        var connection = Plumbing.Sanitize(request.ConnectionId);
        if (request.FailedWorker != 0)
        {
            // The client saw this worker fail (its stream broke, or its heartbeats went unanswered); other
            // clients should not be sent there for the inhibit period either.
            var reason = Plumbing.Sanitize(request.FailedReason ?? "failed");
            if (_workers.Instances.FindInSource(request.FailedWorker) is { } failed)
            {
                Log.ClientReportedFailure(_logger, connection, Tags.LabelOf(failed), reason);
                _workers.ReportInstanceDown(request.FailedWorker, $"client {connection} reported: {reason}");
            }
        }

        var candidates = _workers.Instances.Available.Where(r => r.InstanceId != request.FailedWorker).ToList();
        if (candidates.Count == 0)
        {
            var pool = await DescribePoolAsync().ConfigureAwait(false);
            Log.NoWorkerToAssign(_logger, connection, pool);
            throw new EndpointErrorException($"no worker available: {pool}");
        }

        // The director does not see direct streams, so it cannot balance by load: round robin, as the original.
        var pick = candidates[(int)((uint)Interlocked.Increment(ref _nextAssignment) % (uint)candidates.Count)];
        Log.Assigned(_logger, connection, Tags.LabelOf(pick), pick.Address);
        yield return new Assignment(_name, pick.InstanceId, Tags.LabelOf(pick), pick.Transport, pick.Address, pick.Alternates);
    }

    private async IAsyncEnumerable<RegistrationReply> RegisterAsync(WorkerRegistration registration, RequestContext context)
    {
        yield return await _pool.RegisterAsync(registration, context.CancellationToken).ConfigureAwait(false);
    }

    private async IAsyncEnumerable<HealthReply> HealthAsync(HealthRequest request, RequestContext context)
    {
        var workers = await _pool.DescribeAsync(_workers.Instances.Available.Select(r => r.InstanceId).ToHashSet()).ConfigureAwait(false);
        yield return new HealthReply(_name, "director", "ready", workers);
    }

    private async Task<string> DescribePoolAsync()
    {
        var workers = await _pool.DescribeAsync(_workers.Instances.Available.Select(r => r.InstanceId).ToHashSet()).ConfigureAwait(false);
        return workers.Count == 0 ? "no worker has registered" : string.Join(", ", workers);
    }

    /// <summary>Logs which worker each attempt of a client's stream went to, in the original's words.</summary>
    private sealed class MigrationLog(ILogger logger, long streamId, string connection, Func<long> last) : IAttemptObserver
    {
        private string? _worker;

        public void OnAttemptStarted(InstanceRecord instance, int attempt, long resumeFrom)
        {
            var label = Tags.LabelOf(instance);
            if (_worker is null)
            {
                Log.AssigningStream(logger, streamId, connection, label, last() + 1);
            }
            else
            {
                Log.MigratingStream(logger, streamId, connection, _worker, label, last() + 1);
            }

            _worker = label;
        }

        public void OnAttemptEnded(InstanceRecord instance, int attempt, long items, string? error)
        {
            if (error is not null)
            {
                Log.WorkerStreamFailed(logger, streamId, connection, Tags.LabelOf(instance), items, error);
            }
        }
    }
}
