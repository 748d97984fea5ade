namespace RequestMigration.Routing;

/// <summary>Base of the errors a router throws to end a request.</summary>
public abstract class RoutingException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// No instance of the endpoint is available: <c>no instances found for endpoint {ns/component/endpoint}</c>, followed
/// by where the router looked (<c>(looked in DYN_STORE_KV=file at /tmp/dynamo_store_kv)</c>) when known.
/// </summary>
public sealed class NoInstancesException(string endpointPath, string? where = null)
    : RoutingException(where is null ? MessageFor(endpointPath) : $"{MessageFor(endpointPath)} ({where})")
{
    /// <summary>The endpoint.</summary>
    public string EndpointPath { get; } = endpointPath;

    /// <summary>The text used wherever "no instance to route to" is reported (errors, timeouts, error items).</summary>
    internal static string MessageFor(string endpointPath) => $"no instances found for endpoint {endpointPath}";
}

/// <summary>Direct mode named an instance discovery does not know: <c>instance_id={id:x} not found for endpoint {..}</c>.</summary>
public sealed class InstanceNotFoundException(ulong instanceId, string endpointPath)
    : RoutingException($"instance_id={instanceId:x} not found for endpoint {endpointPath}")
{
    /// <summary>The instance asked for.</summary>
    public ulong InstanceId { get; } = instanceId;
}

/// <summary>
/// Every attempt failed: <c>Failed after N attempts: {last error}</c>. When the last attempt found no
/// instance to go to, the message says so and then names the last real error
/// (<c>...: no instances found for endpoint x/y/z; last error: ...</c>). <see cref="Exception.InnerException"/>
/// is that error's exception when there was one (the socket or stream error, a timeout).
/// </summary>
public sealed class AttemptsExhaustedException(int attempts, string lastError, Exception? inner = null)
    : RoutingException($"Failed after {attempts} attempts: {lastError}", inner)
{
    /// <summary>How many attempts were made.</summary>
    public int Attempts { get; } = attempts;

    /// <summary>The error of the last attempt (with the last real error when the last attempt found no instance).</summary>
    public string LastError { get; } = lastError;

    internal static AttemptsExhaustedException Create(int attempts, string endpointPath, AttemptOutcome? lastFailure, bool lastFoundNoInstance)
    {
        var error = lastFailure?.Error;
        if (lastFoundNoInstance || error is null)
        {
            var none = NoInstancesException.MessageFor(endpointPath);
            error = error is null ? none : $"{none}; last error: {error}";
        }

        return new AttemptsExhaustedException(attempts, error, lastFailure?.Exception);
    }
}

/// <summary>The endpoint rejected the request or its handler failed; not retried (another instance would do the same).</summary>
public sealed class EndpointFailedException(string message, Exception? inner = null) : RoutingException(message, inner);

/// <summary>
/// The call failed on this side, not an instance's: certificates, TLS trust or another local setting. No
/// instance was reported down and nothing was retried (every instance would fail the same way).
/// <see cref="Exception.InnerException"/> is the real cause.
/// </summary>
public sealed class LocalConfigurationException(string message, Exception inner) : RoutingException(message, inner);
