namespace RequestMigration.Routing;

/// <summary>Base of the errors a router throws to end a request.</summary>
public abstract class RoutingException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>No instance of the endpoint is available: <c>no instances found for endpoint {ns/component/endpoint}</c>.</summary>
public sealed class NoInstancesException(string endpointPath)
    : RoutingException(MessageFor(endpointPath))
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

/// <summary>Every attempt failed: <c>Failed after N attempts: {last error}</c>.</summary>
public sealed class AttemptsExhaustedException(int attempts, string lastError)
    : RoutingException($"Failed after {attempts} attempts: {lastError}")
{
    /// <summary>How many attempts were made.</summary>
    public int Attempts { get; } = attempts;

    /// <summary>The error of the last attempt.</summary>
    public string LastError { get; } = lastError;
}

/// <summary>The endpoint rejected the request or its handler failed; not retried (another instance would do the same).</summary>
public sealed class EndpointFailedException(string message) : RoutingException(message);
