using Microsoft.Extensions.Logging;
using RequestMigration;
using RequestMigration.Discovery.Instances;
using RequestMigration.Discovery.Memory;
using RequestMigration.Routing;
using RequestMigration.Serving;

namespace Examples.ConnectionSwap;

/// <summary>
/// A worker. USER port: <c>generate</c>, numbered tokens every <c>CONNECTION_SWAP_TOKEN_INTERVAL_MS</c>,
/// continuing from the sequence number the request (and a migrated attempt's resume point) says. MGMT port:
/// health checks. It registers with every director's MGMT port and heartbeats; directors route to it only
/// while it does, and not while it recovers from a simulated failure.
/// </summary>
internal sealed class Worker(Settings settings, ILoggerFactory loggerFactory, ILoggerFactory quietLoggerFactory)
{
    private readonly ILogger _logger = loggerFactory.CreateLogger("worker");
    private readonly string _label = settings.WorkerName;
    private readonly TimeSpan _interval = settings.TokenInterval;
    private readonly CancellationTokenSource _stopping = new();
    private FailureSimulator _simulator = null!;

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var userAddress = settings.WorkerUser;
        var mgmtAddress = settings.WorkerMgmt;
        var heartbeat = settings.WorkerHeartbeat;
        var userOptions = Plumbing.Options(userAddress);
        var mgmtOptions = Plumbing.Options(mgmtAddress);
        _simulator = new FailureSimulator(_label, settings.FailureSimulation, settings.FailureMin, settings.FailureMax, settings.Recovery, _logger);

        // The worker's own records go to a private store: it joins pools by registering with directors, not
        // through discovery. The same store holds the directors' fixed MGMT addresses.
        await using var store = new MemoryKeyValueStore();
        await using var mgmt = new RequestMigrationRuntime(mgmtOptions, loggerFactory, store: store);
        await using var user = new RequestMigrationRuntime(userOptions, loggerFactory, store: store);

        // Registrations and heartbeats get a runtime of their own (it listens nowhere) whose failures the
        // links report once per outage, not on every heartbeat.
        await using var control = new RequestMigrationRuntime(mgmtOptions, quietLoggerFactory, store: store);

        var userServer = user.CreateServer(new ServerOptions { Tags = Tags.For("worker", _label) })
            .AddEndpoint<GenerateRequest, TokenItem>(Endpoints.WorkerGenerate, GenerateAsync);
        await Plumbing.StartAsync(userServer, userAddress, Settings.WorkerUserAddr, cancellationToken).ConfigureAwait(false);
        var mgmtServer = mgmt.CreateServer(new ServerOptions { Tags = Tags.For("worker-mgmt", _label) })
            .AddEndpoint<HealthRequest, HealthReply>(Endpoints.WorkerHealth, HealthAsync);
        await Plumbing.StartAsync(mgmtServer, mgmtAddress, Settings.WorkerMgmtAddr, cancellationToken).ConfigureAwait(false);

        WorkerRegistration Registration(WorkerState state) => new(
            userServer.InstanceId, _label, userServer.Transport, userServer.Address, [.. userServer.Addresses.Skip(1)], state, _simulator.RecoveryLeft.TotalSeconds, heartbeat.TotalSeconds);
        var links = new DirectorLinks(control, settings.DirectorMgmtTargets, () => Registration(_simulator.State), heartbeat, _simulator, _label, _logger);
        await links.StartAsync(cancellationToken).ConfigureAwait(false);
        _simulator.BeforeBreak = () => links.NotifyAsync(Registration(WorkerState.Recovering), TimeSpan.FromMilliseconds(500));
        Log.WorkerReady(_logger, _label, userServer.Address, mgmtServer.Address, userServer.Transport, settings.FailureSimulation
            ? $"fails {settings.FailureMin.TotalSeconds:0.#}-{settings.FailureMax.TotalSeconds:0.#} s after it starts serving, recovers in {settings.Recovery.TotalSeconds:0.#} s"
            : "failure simulation off");

        await Task.WhenAll(_simulator.RunAsync(cancellationToken), links.RunAsync(cancellationToken)).ConfigureAwait(false);

        Log.Stopping(_logger, "worker", _label);

        // Leave the pools before the port closes, so no director sends a new stream here meanwhile; then hand
        // the streams over at once (they never end by themselves, so draining would only delay them).
        await links.NotifyAsync(Registration(WorkerState.Leaving), TimeSpan.FromSeconds(1)).ConfigureAwait(false);
        var stopped = userServer.StopAsync(CancellationToken.None);
        await _stopping.CancelAsync().ConfigureAwait(false);
        await stopped.ConfigureAwait(false);
    }

    private async IAsyncEnumerable<TokenItem> GenerateAsync(GenerateRequest request, RequestContext context)
    {
        var connection = Plumbing.Sanitize(request.ConnectionId);
        Plumbing.Validate(request);
        var crash = _simulator.BeginStream(connection);
        try
        {
            var sequence = request.StartAfter + context.ResumeFrom;
            Log.StreamRequested(_logger, _label, connection, sequence + 1, context.Attempt);
            using var stop = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, crash, _stopping.Token);
            while (request.Total <= 0 || sequence < request.Total)
            {
                try
                {
                    await Task.Delay(_interval, stop.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (!context.CancellationToken.IsCancellationRequested)
                {
                    // Cut without an end frame, exactly as a crash would: the consumer's router continues the
                    // stream on another worker.
                    if (!crash.IsCancellationRequested)
                    {
                        Log.HandingOver(_logger, _label, connection, sequence);
                    }

                    throw new AbortStreamException(crash.IsCancellationRequested ? $"{_label} simulated failure" : $"{_label} is shutting down");
                }

                sequence++;
                Log.SendingToken(_logger, _label, connection, sequence);
                yield return new TokenItem(sequence, $"token-{sequence}", _label);
            }

            Log.WorkerStreamComplete(_logger, _label, connection, sequence);
        }
        finally
        {
            _simulator.EndStream(connection);
        }
    }

    private async IAsyncEnumerable<HealthReply> HealthAsync(HealthRequest request, RequestContext context)
    {
        await Task.CompletedTask.ConfigureAwait(false);
        var state = _simulator.State;
        var details = state == WorkerState.Recovering
            ? new[] { $"recovering ({_simulator.RecoveryLeft.TotalSeconds:0.0} s left)", $"{_simulator.ActiveStreams} stream(s)" }
            : [$"{_simulator.ActiveStreams} stream(s)"];
        yield return new HealthReply(_label, "worker", state.ToString().ToLowerInvariant(), details);
    }
}

/// <summary>
/// A worker's registrations with every director's MGMT port: one at start, then a heartbeat every
/// <c>CONNECTION_SWAP_WORKER_HEARTBEAT_SECS</c>, and one at once whenever the worker's state changes. A director
/// that is down is retried on the same schedule; the worker logs when it loses and regains each one.
/// </summary>
internal sealed class DirectorLinks(RequestMigrationRuntime runtime, IReadOnlyList<HostPort> targets, Func<WorkerRegistration> current, TimeSpan interval, FailureSimulator simulator, string label, ILogger logger)
{
    private IReadOnlyList<InstanceRecord> _directors = [];
    private PushRouter<WorkerRegistration, RegistrationReply> _router = null!;

    private TimeSpan CallTimeout => TimeSpan.FromSeconds(Math.Clamp(interval.TotalSeconds, 0.5, 2));

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        _directors = await Plumbing.PublishStaticAsync(runtime.Store, Endpoints.DirectorRegister, targets, "director-mgmt", runtime.Options, cancellationToken).ConfigureAwait(false);

        // One attempt per call: the loop is the retry, on the heartbeat schedule.
        _router = runtime.CreateRouter<WorkerRegistration, RegistrationReply>(Endpoints.DirectorRegister, new RouterOptions { MaxAttempts = 1, MaxRetryWait = TimeSpan.Zero, InhibitDuration = TimeSpan.Zero });
        await Plumbing.WaitSyncedAsync(_router, TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
    }

    public Task RunAsync(CancellationToken cancellationToken) => Task.WhenAll(_directors.Select(d => LinkAsync(d, cancellationToken)));

    /// <summary>Sends <paramref name="registration"/> to every director at once, waiting at most <paramref name="timeout"/>.</summary>
    public async Task NotifyAsync(WorkerRegistration registration, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        await Task.WhenAll(_directors.Select(d => SendAsync(d, registration, cts.Token))).ConfigureAwait(false);
    }

    private async Task LinkAsync(InstanceRecord director, CancellationToken cancellationToken)
    {
        bool? up = null;
        while (!cancellationToken.IsCancellationRequested)
        {
            var changed = simulator.Changed;
            using (var call = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
            {
                call.CancelAfter(CallTimeout);
                var (reply, error) = await SendAsync(director, current(), call.Token).ConfigureAwait(false);
                if (cancellationToken.IsCancellationRequested)
                {
                    return;
                }

                if (reply is not null && up != true)
                {
                    Log.Registered(logger, label, reply.Director, director.Address, reply.PoolSize, interval.TotalSeconds);
                }
                else if (reply is not null)
                {
                    Log.HeartbeatSent(logger, label, reply.Director, reply.PoolSize);
                }
                else if (up != false)
                {
                    Log.DirectorUnreachable(logger, label, director.Address, error!, interval.TotalSeconds);
                }

                up = reply is not null;
            }

            try
            {
                await Task.WhenAny(Task.Delay(interval, cancellationToken), changed).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task<(RegistrationReply? Reply, string? Error)> SendAsync(InstanceRecord director, WorkerRegistration registration, CancellationToken cancellationToken)
    {
        try
        {
            return (await Plumbing.SingleAsync(_router.DirectAsync(registration, director.InstanceId, cancellationToken)).ConfigureAwait(false), null);
        }
        catch (OperationCanceledException)
        {
            return (null, $"no answer within {CallTimeout.TotalSeconds:0.#} s");
        }
        catch (RoutingException ex)
        {
            return (null, ex is AttemptsExhaustedException a ? a.LastError : ex.Message);
        }
    }
}
