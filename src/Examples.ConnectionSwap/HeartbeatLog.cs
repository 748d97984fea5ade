using Microsoft.Extensions.Logging;
using RequestMigration.Discovery.Instances;
using RequestMigration.Health;

namespace Examples.ConnectionSwap;

/// <summary>Logs a router's heartbeats in the original's words (<c>heartbeat ok</c>, <c>heartbeat failed 2 times - marking worker as failed</c>).</summary>
internal sealed class HeartbeatLog(ILogger logger, string? connection, string peerKind, LogLevel okLevel, int misses = 2) : IHeartbeatObserver
{
    public void OnReply(InstanceRecord instance, TimeSpan roundTrip) =>
        Log.HeartbeatOk(logger, okLevel, Prefix(instance), roundTrip.TotalMilliseconds);

    public void OnMissed(InstanceRecord instance, int missesInARow) =>
        Log.HeartbeatTimeout(logger, Prefix(instance), missesInARow);

    public void OnFailed(InstanceRecord instance, string reason) =>
        Log.HeartbeatFailed(logger, Prefix(instance), misses, peerKind, reason);

    private string Prefix(InstanceRecord instance) =>
        connection is null ? $"{peerKind}={Tags.LabelOf(instance)}" : $"connection.id={connection} {peerKind}={Tags.LabelOf(instance)}";
}
