using RequestMigration.Discovery.Instances;

namespace RequestMigration.Tests.Infrastructure;

/// <summary>Instance records for tests that only need a valid record, not a reachable instance.</summary>
internal static class InstanceRecords
{
    public static InstanceRecord Record(EndpointId endpoint, ulong instanceId) => new()
    {
        InstanceId = instanceId,
        Namespace = endpoint.Namespace,
        Component = endpoint.Component,
        Endpoint = endpoint.Endpoint,
        Transport = "tcp",
        Address = "127.0.0.1:9",
    };
}
