using Microsoft.Extensions.Logging;

namespace Examples.ConnectionSwap;

/// <summary>
/// Every log line of the example, in the original's shape (<c>connection.id=… worker=… sequence=N: received
/// token</c>). Event ids: 100-119 director, 120-139 worker pool, 200-229 worker, 300-339 client, 340-359
/// session, 400-409 heartbeats. Next free: 113, 126, 213, 313, 349, 403.
/// </summary>
internal static partial class Log
{
    // Director.
    [LoggerMessage(100, LogLevel.Information, "director ready: director={Director} USER={UserAddress} MGMT={MgmtAddress} transport={Transport}; registered in the {Store} discovery store")]
    public static partial void DirectorReady(ILogger logger, string director, string userAddress, string mgmtAddress, string transport, string store);

    [LoggerMessage(101, LogLevel.Information, "{Role}={Name}: stopping")]
    public static partial void Stopping(ILogger logger, string role, string name);

    [LoggerMessage(102, LogLevel.Information, "stream.id={StreamId} connection.id={ConnectionId}: client opened stream (from sequence={Next}, attempt {Attempt})")]
    public static partial void ClientStream(ILogger logger, long streamId, string connectionId, long next, int attempt);

    [LoggerMessage(103, LogLevel.Information, "stream.id={StreamId} connection.id={ConnectionId}: stream complete at sequence={Last}")]
    public static partial void StreamComplete(ILogger logger, long streamId, string connectionId, long last);

    [LoggerMessage(104, LogLevel.Warning, "stream.id={StreamId} connection.id={ConnectionId}: no worker available after sequence={Last} ({Pool}) - telling the client to wait")]
    public static partial void NoWorker(ILogger logger, long streamId, string connectionId, long last, string pool);

    [LoggerMessage(105, LogLevel.Warning, "connection.id={ConnectionId} worker={Worker}: client reports the worker failed ({Reason}) - keeping it out of rotation")]
    public static partial void ClientReportedFailure(ILogger logger, string connectionId, string worker, string reason);

    [LoggerMessage(106, LogLevel.Warning, "connection.id={ConnectionId}: no worker to assign ({Pool})")]
    public static partial void NoWorkerToAssign(ILogger logger, string connectionId, string pool);

    [LoggerMessage(107, LogLevel.Information, "connection.id={ConnectionId} worker={Worker} worker.addr={Address}: assigned worker to client (direct connection)")]
    public static partial void Assigned(ILogger logger, string connectionId, string worker, string address);

    [LoggerMessage(108, LogLevel.Information, "stream.id={StreamId} connection.id={ConnectionId} worker={Worker}: assigning stream to worker (from sequence={Next})")]
    public static partial void AssigningStream(ILogger logger, long streamId, string connectionId, string worker, long next);

    [LoggerMessage(109, LogLevel.Information, "stream.id={StreamId} connection.id={ConnectionId} from_worker={From} to_worker={To}: migrating connection to new worker (continuing at sequence={Next})")]
    public static partial void MigratingStream(ILogger logger, long streamId, string connectionId, string from, string to, long next);

    [LoggerMessage(110, LogLevel.Warning, "stream.id={StreamId} connection.id={ConnectionId} worker={Worker}: worker failed after {Items} token(s) ({Error}) - initiating connection migration")]
    public static partial void WorkerStreamFailed(ILogger logger, long streamId, string connectionId, string worker, long items, string error);

    [LoggerMessage(111, LogLevel.Warning, "director={Director}: DYN_STORE_KV=mem keeps this director's registration inside this process; clients find it only through {Variable}")]
    public static partial void PrivateStore(ILogger logger, string director, string variable);

    [LoggerMessage(112, LogLevel.Information, "stream.id={StreamId} connection.id={ConnectionId}: director stopping - cutting the stream after sequence={Last} so the client continues through another director")]
    public static partial void HandingOverClient(ILogger logger, long streamId, string connectionId, long last);

    // Worker pool (director).
    [LoggerMessage(120, LogLevel.Information, "worker={Worker} worker.addr={Address} instance={InstanceId:x}: registered worker (heartbeat every {Seconds:0.#} s)")]
    public static partial void WorkerRegistered(ILogger logger, string worker, string address, ulong instanceId, double seconds);

    [LoggerMessage(121, LogLevel.Debug, "worker={Worker}: {From} -> {To}")]
    public static partial void WorkerStateChanged(ILogger logger, string worker, WorkerState from, WorkerState to);

    [LoggerMessage(122, LogLevel.Information, "worker={Worker} worker.addr={Address}: joined the pool ({Available} available)")]
    public static partial void PoolJoined(ILogger logger, string worker, string address, int available);

    [LoggerMessage(123, LogLevel.Warning, "worker={Worker}: left the pool: {Reason} ({Available} available)")]
    public static partial void PoolLeft(ILogger logger, string worker, string reason, int available);

    [LoggerMessage(124, LogLevel.Warning, "worker={Worker}: failed ({Reason}) - no new streams until it is back")]
    public static partial void PoolFailed(ILogger logger, string worker, string reason);

    [LoggerMessage(125, LogLevel.Information, "worker={Worker}: back in rotation ({Available} available)")]
    public static partial void PoolRecovered(ILogger logger, string worker, int available);

    // Worker.
    [LoggerMessage(200, LogLevel.Information, "worker ready: worker={Worker} USER={UserAddress} MGMT={MgmtAddress} transport={Transport}; {Failures}")]
    public static partial void WorkerReady(ILogger logger, string worker, string userAddress, string mgmtAddress, string transport, string failures);

    [LoggerMessage(201, LogLevel.Information, "connection.id={ConnectionId} worker={Worker}: received inference request (from sequence={Next}, attempt {Attempt})")]
    public static partial void StreamRequested(ILogger logger, string worker, string connectionId, long next, int attempt);

    [LoggerMessage(202, LogLevel.Debug, "worker={Worker} connection.id={ConnectionId} sequence={Sequence}: sending token")]
    public static partial void SendingToken(ILogger logger, string worker, string connectionId, long sequence);

    [LoggerMessage(203, LogLevel.Information, "worker={Worker} connection.id={ConnectionId}: stream complete at sequence={Sequence}")]
    public static partial void WorkerStreamComplete(ILogger logger, string worker, string connectionId, long sequence);

    [LoggerMessage(204, LogLevel.Debug, "worker={Worker}: serving; simulated failure in {Seconds:0.0} s")]
    public static partial void FailureScheduled(ILogger logger, string worker, double seconds);

    [LoggerMessage(205, LogLevel.Warning, "worker={Worker} connection.id={ConnectionId}: simulating failure after {Seconds:0.0}s")]
    public static partial void SimulatingFailure(ILogger logger, string worker, string connectionId, double seconds);

    [LoggerMessage(206, LogLevel.Information, "worker={Worker}: worker entering recovery mode ({Seconds:0.#}s cooldown) - marked as unavailable")]
    public static partial void EnteringRecovery(ILogger logger, string worker, double seconds);

    [LoggerMessage(207, LogLevel.Information, "worker={Worker}: worker recovered - available again")]
    public static partial void Recovered(ILogger logger, string worker);

    [LoggerMessage(208, LogLevel.Information, "worker={Worker}: registered with director={Director} at {Address} (pool size {PoolSize}); heartbeat every {Seconds:0.#} s")]
    public static partial void Registered(ILogger logger, string worker, string director, string address, int poolSize, double seconds);

    [LoggerMessage(209, LogLevel.Debug, "worker={Worker}: heartbeat to director={Director} ok (pool size {PoolSize})")]
    public static partial void HeartbeatSent(ILogger logger, string worker, string director, int poolSize);

    [LoggerMessage(210, LogLevel.Warning, "worker={Worker}: cannot reach director at {Address} ({Error}); retrying every {Seconds:0.#} s")]
    public static partial void DirectorUnreachable(ILogger logger, string worker, string address, string error, double seconds);

    [LoggerMessage(212, LogLevel.Information, "worker={Worker} connection.id={ConnectionId}: worker stopping - cutting the stream after sequence={Sequence} so it continues on another worker")]
    public static partial void HandingOver(ILogger logger, string worker, string connectionId, long sequence);

    // Client.
    [LoggerMessage(300, LogLevel.Information, "connection.id={ConnectionId}: starting session (mode={Mode}, {Where}, tokens={Tokens})")]
    public static partial void ClientStarting(ILogger logger, string connectionId, string mode, string where, string tokens);

    [LoggerMessage(301, LogLevel.Information, "connection.id={ConnectionId}: stopped")]
    public static partial void ClientStopped(ILogger logger, string connectionId);

    [LoggerMessage(302, LogLevel.Information, "connection.id={ConnectionId}: asking director for worker assignment")]
    public static partial void AskingDirector(ILogger logger, string connectionId);

    [LoggerMessage(303, LogLevel.Information, "connection.id={ConnectionId} worker={Worker}: director assigned worker - establishing direct connection (worker.addr={Address}, director={Director})")]
    public static partial void DirectorAssigned(ILogger logger, string connectionId, string worker, string address, string director);

    [LoggerMessage(304, LogLevel.Information, "connection.id={ConnectionId} worker={Worker}: direct connection established to worker (worker.addr={Address})")]
    public static partial void DirectConnected(ILogger logger, string connectionId, string worker, string address);

    [LoggerMessage(305, LogLevel.Warning, "connection.id={ConnectionId} worker={Worker}: worker stream ended ({Reason})")]
    public static partial void WorkerStreamEnded(ILogger logger, string connectionId, string worker, string reason);

    [LoggerMessage(306, LogLevel.Information, "connection.id={ConnectionId}: returning to director for new worker assignment")]
    public static partial void ReturningToDirector(ILogger logger, string connectionId);

    [LoggerMessage(307, LogLevel.Error, "connection.id={ConnectionId}: giving up: no token for {Seconds:0} s ({Variable})")]
    public static partial void GivingUp(ILogger logger, string connectionId, double seconds, string variable);

    [LoggerMessage(308, LogLevel.Warning, "connection.id={ConnectionId}: no director reachable ({Problem}) - retrying in {Seconds:0.0} s")]
    public static partial void NoDirector(ILogger logger, string connectionId, string problem, double seconds);

    [LoggerMessage(309, LogLevel.Information, "connection.id={ConnectionId} director={Director} director.addr={Address}: streaming through director")]
    public static partial void StreamingThroughDirector(ILogger logger, string connectionId, string director, string address);

    [LoggerMessage(310, LogLevel.Warning, "connection.id={ConnectionId} from_director={From} to_director={To} director.addr={Address}: director failed - session continues through another director at sequence={Next}")]
    public static partial void SwitchingDirectors(ILogger logger, string connectionId, string from, string to, string address, long next);

    [LoggerMessage(311, LogLevel.Debug, "connection.id={ConnectionId} director={Director}: stream through director ended ({Error})")]
    public static partial void DirectorStreamBroke(ILogger logger, string connectionId, string director, string error);

    [LoggerMessage(312, LogLevel.Debug, "connection.id={ConnectionId}: still waiting ({Why}); retrying in {Seconds:0.0} s")]
    public static partial void StillWaiting(ILogger logger, string connectionId, string why, double seconds);

    // Session.
    [LoggerMessage(340, LogLevel.Information, "connection.id={ConnectionId} worker={Worker} sequence={Sequence}: received token")]
    public static partial void ReceivedToken(ILogger logger, string connectionId, string worker, long sequence);

    [LoggerMessage(341, LogLevel.Warning, "connection.id={ConnectionId} from_worker={From} to_worker={To}: CONNECTION MIGRATION: switching workers (sequence continues at {Sequence})")]
    public static partial void SwitchingWorkers(ILogger logger, string connectionId, string from, string to, long sequence);

    [LoggerMessage(342, LogLevel.Error, "connection.id={ConnectionId} worker={Worker} sequence={Sequence}: DUPLICATE token (already have up to {Last})")]
    public static partial void DuplicateToken(ILogger logger, string connectionId, string worker, long sequence, long last);

    [LoggerMessage(343, LogLevel.Error, "connection.id={ConnectionId} worker={Worker}: GAP - expected sequence={Expected}, got sequence={Got}")]
    public static partial void TokenGap(ILogger logger, string connectionId, string worker, long expected, long got);

    [LoggerMessage(344, LogLevel.Error, "connection.id={ConnectionId} worker={Worker} sequence={Sequence}: unexpected token text '{Text}'")]
    public static partial void UnexpectedText(ILogger logger, string connectionId, string worker, long sequence, string text);

    [LoggerMessage(345, LogLevel.Warning, "connection.id={ConnectionId}: waiting for a worker - {Why}; the session resumes at sequence={Next} when one is back (gives up after {MaxWait:0} s without a token)")]
    public static partial void WaitingForWorker(ILogger logger, string connectionId, string why, long next, double maxWait);

    [LoggerMessage(346, LogLevel.Information, "connection.id={ConnectionId} worker={Worker}: worker available again after {Seconds:0.0} s - session resumed at sequence={Sequence}")]
    public static partial void Resumed(ILogger logger, string connectionId, string worker, long sequence, double seconds);

    [LoggerMessage(347, LogLevel.Information, "connection.id={ConnectionId}: session summary: tokens={Tokens} last_sequence={Last} worker_switches={Switches} gaps={Gaps} duplicates={Duplicates} workers={Workers} - {Verdict}")]
    public static partial void Summary(ILogger logger, string connectionId, long tokens, long last, int switches, long gaps, long duplicates, string workers, string verdict);

    // Heartbeats (as the runtime's heartbeat observer reports them).
    [LoggerMessage(EventId = 400, Message = "{Peer}: heartbeat ok ({RoundTripMs:0.0} ms)")]
    public static partial void HeartbeatOk(ILogger logger, LogLevel level, string peer, double roundTripMs);

    [LoggerMessage(401, LogLevel.Warning, "{Peer}: heartbeat timeout ({Misses} in a row)")]
    public static partial void HeartbeatTimeout(ILogger logger, string peer, int misses);

    [LoggerMessage(402, LogLevel.Error, "{Peer}: heartbeat failed {Misses} times - marking {Kind} as failed ({Reason})")]
    public static partial void HeartbeatFailed(ILogger logger, string peer, int misses, string kind, string reason);
}
