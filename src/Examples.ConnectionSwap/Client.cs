using Microsoft.Extensions.Logging;
using RequestMigration;
using RequestMigration.Discovery.Instances;
using RequestMigration.Discovery.Memory;
using RequestMigration.LoadBalancing;
using RequestMigration.Routing;

namespace Examples.ConnectionSwap;

/// <summary>
/// The client: one logical session (<c>connection.id=conn-XXXX</c>) whose token sequence continues, gapless,
/// across worker and director failures. <c>director</c> mode holds one stream to a director, which continues
/// it on the next worker; <c>direct</c> mode asks a director for a worker, streams from it itself with
/// heartbeats, and goes back to a director when it fails. Exit code 0 when every token arrived once and in
/// order, 3 when not, 1 when it gave up waiting.
/// </summary>
internal sealed class Client(Settings settings, ILoggerFactory loggerFactory)
{
    private static readonly TimeSpan DirectorWait = TimeSpan.FromSeconds(1);

    private readonly ILogger _logger = loggerFactory.CreateLogger("client");
    private readonly Backoff _noDirector = new(TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(5));

    // Short: a worker recovers at a moment nobody announces to the client, and the session should resume soon after.
    private readonly Backoff _noWorker = new(TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(1));

    public async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        var mode = settings.Mode;
        var targets = settings.DirectorTargets;
        var total = settings.Tokens;
        var options = Plumbing.Options();
        var session = new Session($"conn-{Random.Shared.Next(0x10000):x4}", total, settings.ClientMaxWait, _logger);

        // Directors come from the discovery store where every director registers, or, when
        // CONNECTION_SWAP_DIRECTOR_TARGET is set, from those addresses (clients that cannot read the store).
        await using var targetStore = new MemoryKeyValueStore();
        await using var runtime = targets is null
            ? new RequestMigrationRuntime(options, loggerFactory)
            : new RequestMigrationRuntime(options, loggerFactory, store: targetStore);
        if (targets is not null)
        {
            await Plumbing.PublishStaticAsync(targetStore, Endpoints.DirectorGenerate, targets, "director", options, cancellationToken).ConfigureAwait(false);
            await Plumbing.PublishStaticAsync(targetStore, Endpoints.DirectorAssign, targets, "director", options, cancellationToken).ConfigureAwait(false);
        }

        var where = targets is null ? $"directors are looked up in the {runtime.Store.Name} discovery store (DYN_STORE_KV)" : $"{Settings.DirectorTarget}={string.Join(",", targets)}";
        Log.ClientStarting(_logger, session.ConnectionId, mode.ToString().ToLowerInvariant(), where, total == 0 ? "unlimited" : total.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var code = 0;
        try
        {
            code = mode == ClientMode.Director
                ? await ViaDirectorAsync(runtime, session, where, cancellationToken).ConfigureAwait(false)
                : await DirectAsync(runtime, options, session, where, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            Log.ClientStopped(_logger, session.ConnectionId);
        }

        session.LogSummary();
        return code != 0 ? code : session.Clean ? 0 : 3;
    }

    /// <summary>Director mode: one stream through a director; the director (and, if it dies, the next director) continues it.</summary>
    private async Task<int> ViaDirectorAsync(RequestMigrationRuntime runtime, Session session, string where, CancellationToken cancellationToken)
    {
        var options = Plumbing.RouterOptions(heartbeats: true);
        options.Migration = true;
        options.LoadBalancingPolicy = LoadBalancingPolicies.LeastConnections;
        options.MaxAttempts = 5;
        options.MaxRetryWait = DirectorWait;
        if (options.Heartbeat is { } heartbeat)
        {
            heartbeat.Observer = new HeartbeatLog(_logger, session.ConnectionId, "director", LogLevel.Debug, heartbeat.MissesBeforeFailure);
        }

        var router = runtime.CreateRouter<GenerateRequest, TokenItem>(Endpoints.DirectorGenerate, options);
        await Plumbing.WaitSyncedAsync(router, TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);
        var observer = new DirectorSwitchLog(_logger, session);
        while (!session.Done)
        {
            string problem;
            var directorAnswered = false;
            if (!await AnyDirectorAsync(router, cancellationToken).ConfigureAwait(false))
            {
                problem = NoDirector(router, where);
            }
            else
            {
                try
                {
                    await foreach (var item in router.GenerateAsync(new GenerateRequest(session.ConnectionId, session.Last, settings.Tokens), observer, cancellationToken).ConfigureAwait(false))
                    {
                        if (item.Data is { } token)
                        {
                            observer.OnToken(token.Sequence);
                            session.Accept(token);
                            _noDirector.Reset();
                            _noWorker.Reset();
                        }
                    }

                    continue;
                }
                catch (EndpointFailedException ex)
                {
                    // The director answered but could not serve: no worker is available right now.
                    directorAnswered = true;
                    problem = ex.Message;
                }
                catch (RoutingException ex)
                {
                    problem = Reason(ex);
                }
            }

            if (await WaitBeforeRetryAsync(session, problem, directorAnswered, cancellationToken).ConfigureAwait(false) is { } giveUp)
            {
                return giveUp;
            }
        }

        return 0;
    }

    /// <summary>Direct mode: the director assigns a worker; the client streams from it with heartbeats and comes back when it fails.</summary>
    private async Task<int> DirectAsync(RequestMigrationRuntime runtime, RuntimeOptions runtimeOptions, Session session, string where, CancellationToken cancellationToken)
    {
        var assignOptions = Plumbing.RouterOptions(heartbeats: false);
        assignOptions.MaxRetryWait = DirectorWait;
        var directors = runtime.CreateRouter<AssignRequest, Assignment>(Endpoints.DirectorAssign, assignOptions);
        await Plumbing.WaitSyncedAsync(directors, TimeSpan.FromSeconds(5), cancellationToken).ConfigureAwait(false);

        // The assigned worker goes into a store of our own: the router then connects to exactly that worker,
        // with the runtime's heartbeats (5 s / 3 s / 2 misses unless DYN_HEARTBEAT_* say otherwise).
        await using var workerStore = new MemoryKeyValueStore();
        await using var workerRuntime = new RequestMigrationRuntime(runtimeOptions, loggerFactory, store: workerStore);
        var workerOptions = Plumbing.RouterOptions(heartbeats: true);
        workerOptions.Migration = false;
        if (workerOptions.Heartbeat is { } heartbeat)
        {
            heartbeat.Observer = new HeartbeatLog(_logger, session.ConnectionId, "worker", LogLevel.Information, heartbeat.MissesBeforeFailure);
        }

        var workers = workerRuntime.CreateRouter<GenerateRequest, TokenItem>(Endpoints.WorkerGenerate, workerOptions);
        ulong failed = 0;
        string? failedReason = null;
        InstanceRecord? current = null;
        while (!session.Done)
        {
            Log.AskingDirector(_logger, session.ConnectionId);
            Assignment assignment;
            try
            {
                if (!await AnyDirectorAsync(directors, cancellationToken).ConfigureAwait(false))
                {
                    throw new NoInstancesException(Endpoints.DirectorAssign.Path);
                }

                assignment = await Plumbing.SingleAsync(directors.GenerateAsync(new AssignRequest(session.ConnectionId, failed, failedReason), cancellationToken)).ConfigureAwait(false);
            }
            catch (RoutingException ex)
            {
                var answered = ex is EndpointFailedException;
                if (answered)
                {
                    // A director heard about the failed worker; it keeps it out of rotation from now on.
                    (failed, failedReason) = (0, null);
                }

                var problem = answered ? ex.Message : ex is NoInstancesException ? NoDirector(directors, where) : Reason(ex);
                if (await WaitBeforeRetryAsync(session, problem, answered, cancellationToken).ConfigureAwait(false) is { } giveUp)
                {
                    return giveUp;
                }

                continue;
            }

            (failed, failedReason) = (0, null);
            Log.DirectorAssigned(_logger, session.ConnectionId, assignment.Worker, assignment.Address, assignment.Director);
            var record = assignment.ToRecord();
            if (current is not null && current.InstanceId != record.InstanceId)
            {
                await workerStore.DeleteInstanceAsync(Endpoints.WorkerGenerate, current.InstanceId, cancellationToken).ConfigureAwait(false);
            }

            await workerStore.PutInstanceAsync(record, cancellationToken: cancellationToken).ConfigureAwait(false);
            current = record;
            await KnownAsync(workers, record.InstanceId, cancellationToken).ConfigureAwait(false);

            var established = false;
            try
            {
                await foreach (var item in workers.DirectAsync(new GenerateRequest(session.ConnectionId, session.Last, settings.Tokens), record.InstanceId, cancellationToken).ConfigureAwait(false))
                {
                    if (item.Data is not { } token)
                    {
                        // The failed attempt; the exception that ends the call says why.
                        continue;
                    }

                    if (!established)
                    {
                        established = true;
                        Log.DirectConnected(_logger, session.ConnectionId, assignment.Worker, assignment.Address);
                    }

                    session.Accept(token);
                    _noDirector.Reset();
                    _noWorker.Reset();
                }
            }
            catch (RoutingException ex)
            {
                var reason = Reason(ex);
                Log.WorkerStreamEnded(_logger, session.ConnectionId, assignment.Worker, reason);
                Log.ReturningToDirector(_logger, session.ConnectionId);
                (failed, failedReason) = (record.InstanceId, reason);
                if (!established)
                {
                    // It failed before a single token: don't spin if the directors keep offering only broken workers.
                    await Task.Delay(_noWorker.Next(), cancellationToken).ConfigureAwait(false);
                }

                if (session.WaitedTooLong)
                {
                    Log.GivingUp(_logger, session.ConnectionId, session.SinceProgress.TotalSeconds, Settings.ClientMaxWaitSecs);
                    return 1;
                }
            }
        }

        return 0;
    }

    /// <summary>
    /// Waits before asking again: briefly when the director said it has no worker (one is about to recover),
    /// backing off when no director answers. Returns the exit code when the client has waited long enough.
    /// </summary>
    private async Task<int?> WaitBeforeRetryAsync(Session session, string problem, bool directorAnswered, CancellationToken cancellationToken)
    {
        if (session.WaitedTooLong)
        {
            Log.GivingUp(_logger, session.ConnectionId, session.SinceProgress.TotalSeconds, Settings.ClientMaxWaitSecs);
            return 1;
        }

        var delay = directorAnswered ? _noWorker.Next() : _noDirector.Next();
        if (directorAnswered)
        {
            session.Waiting($"the director says: {problem}", delay);
        }
        else
        {
            Log.NoDirector(_logger, session.ConnectionId, problem, delay.TotalSeconds);
        }

        await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
        return null;
    }

    /// <summary>Why no director could be asked, in the words of where the client looks for them.</summary>
    private static string NoDirector<TReq, TResp>(PushRouter<TReq, TResp> router, string where) =>
        router.Instances.Source.Count == 0 ? $"no director found: {where}" : $"every director failed recently: {where}";

    /// <summary>The useful part of a routing error: the last real failure rather than "every instance is inhibited".</summary>
    private static string Reason(RoutingException ex)
    {
        var text = ex is AttemptsExhaustedException a ? a.LastError : ex.Message;
        const string Last = "; last error: ";
        var i = text.IndexOf(Last, StringComparison.Ordinal);
        return i >= 0 ? text[(i + Last.Length)..] : text;
    }

    /// <summary>Whether a director is available, waiting a moment for one to appear (a router that just started, a director coming back).</summary>
    private static async Task<bool> AnyDirectorAsync<TReq, TResp>(PushRouter<TReq, TResp> router, CancellationToken cancellationToken)
    {
        if (router.Instances.Available.Count > 0)
        {
            return true;
        }

        try
        {
            await router.WaitForInstancesAsync(DirectorWait, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (TimeoutException)
        {
            return false;
        }
    }

    /// <summary>Waits until the router has read the assignment we just wrote into its store.</summary>
    private static async Task KnownAsync(PushRouter<GenerateRequest, TokenItem> router, ulong instanceId, CancellationToken cancellationToken)
    {
        for (var i = 0; i < 200 && router.Instances.FindInSource(instanceId) is null; i++)
        {
            await Task.Delay(10, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Logs which director the session streams through, and when it moves to another one: an attempt is
    /// only announced once a token came through it (an attempt on a dead director never gets that far).
    /// </summary>
    private sealed class DirectorSwitchLog(ILogger logger, Session session) : IAttemptObserver
    {
        private InstanceRecord? _attempt;
        private string? _serving;

        public void OnAttemptStarted(InstanceRecord instance, int attempt, long resumeFrom) => _attempt = instance;

        public void OnAttemptEnded(InstanceRecord instance, int attempt, long items, string? error)
        {
            if (error is not null)
            {
                Log.DirectorStreamBroke(logger, session.ConnectionId, Tags.LabelOf(instance), error);
            }
        }

        /// <summary>A token is about to be accepted: it came through the current attempt's director.</summary>
        public void OnToken(long sequence)
        {
            if (_attempt is not { } instance || Tags.LabelOf(instance) == _serving)
            {
                return;
            }

            var label = Tags.LabelOf(instance);
            if (_serving is null)
            {
                Log.StreamingThroughDirector(logger, session.ConnectionId, label, instance.Address);
            }
            else
            {
                Log.SwitchingDirectors(logger, session.ConnectionId, _serving, label, instance.Address, sequence);
            }

            _serving = label;
        }
    }
}
