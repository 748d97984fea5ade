using System.Net.Sockets;
using Grpc.Core;

namespace RequestMigration.Discovery.Etcd;

/// <summary>How the etcd store reads gRPC failures, and the call metadata it sends.</summary>
internal static class EtcdErrors
{
    /// <summary>
    /// The metadata etcd's own client sends to require a leader (gRPC key <c>hasleader</c>, value <c>true</c>):
    /// a member that has lost its leader then rejects the stream with <c>etcdserver: no leader</c> at once, and
    /// cancels streams opened this way when it loses its leader later, instead of leaving them hanging or stale.
    /// </summary>
    public static Metadata RequireLeader() => new() { { "hasleader", "true" } };

    /// <summary>
    /// Whether a failure is this endpoint's problem, so another member may do better. Only answers about the
    /// request itself (a missing lease, a bad argument, a refused permission) hold for every member; anything
    /// else (<c>Unavailable</c> for a down member or <c>no leader</c>, <c>DeadlineExceeded</c>, and the
    /// <c>Unknown: context deadline exceeded</c> a member cut off from its peers returns) moves on.
    /// </summary>
    public static bool IsEndpointFailure(StatusCode code) => code switch
    {
        StatusCode.InvalidArgument
            or StatusCode.NotFound
            or StatusCode.AlreadyExists
            or StatusCode.PermissionDenied
            or StatusCode.Unauthenticated
            or StatusCode.FailedPrecondition
            or StatusCode.OutOfRange
            or StatusCode.Unimplemented => false,
        _ => true,
    };

    /// <summary>Whether the failure was a time-out rather than an answer (such as a refused connection).</summary>
    public static bool IsTimeout(RpcException ex) => ex.StatusCode == StatusCode.DeadlineExceeded;

    /// <summary>Whether nothing listens at the endpoint (the connection was refused).</summary>
    public static bool IsRefused(RpcException ex)
    {
        for (var e = ex.Status.DebugException; e is not null; e = e.InnerException)
        {
            if (e is SocketException { SocketErrorCode: SocketError.ConnectionRefused })
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Status code, detail and the underlying cause, for messages; a refused connection says so plainly.</summary>
    public static string Describe(RpcException ex)
    {
        if (IsRefused(ex))
        {
            return $"{ex.StatusCode}: connection refused (nothing listens there)";
        }

        var detail = string.IsNullOrEmpty(ex.Status.Detail) && ex.StatusCode == StatusCode.DeadlineExceeded ? "no answer in time" : ex.Status.Detail;
        var cause = ex.Status.DebugException?.Message;
        return string.IsNullOrEmpty(cause) || detail.Contains(cause, StringComparison.Ordinal)
            ? $"{ex.StatusCode}: {detail}"
            : $"{ex.StatusCode}: {detail} ({cause})";
    }
}
