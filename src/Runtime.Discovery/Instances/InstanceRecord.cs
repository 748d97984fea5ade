using System.Text.Json.Serialization;

namespace RequestMigration.Discovery.Instances;

/// <summary>What an instance publishes about itself under <c>v1/instances/{ns}/{component}/{endpoint}/{id:x}</c>.</summary>
public sealed record InstanceRecord
{
    /// <summary>The instance id (the etcd lease id on etcd, a random 64-bit number on file and mem).</summary>
    [JsonPropertyName("instance_id")]
    public required ulong InstanceId { get; init; }

    /// <summary>Namespace of the endpoint.</summary>
    [JsonPropertyName("namespace")]
    public required string Namespace { get; init; }

    /// <summary>Component of the endpoint.</summary>
    [JsonPropertyName("component")]
    public required string Component { get; init; }

    /// <summary>Endpoint name.</summary>
    [JsonPropertyName("endpoint")]
    public required string Endpoint { get; init; }

    /// <summary>The transport the instance serves on: <c>quic</c> or <c>tcp</c>.</summary>
    [JsonPropertyName("transport")]
    public required string Transport { get; init; }

    /// <summary>Where to connect: <c>host:port</c>.</summary>
    [JsonPropertyName("address")]
    public required string Address { get; init; }

    /// <summary>
    /// Other transports the instance also serves on, in order of preference after <see cref="Transport"/> /
    /// <see cref="Address"/> (a server in <c>auto</c> mode with QUIC available also listens on TCP, for clients
    /// without QUIC). Empty for records of servers that listen on one transport, and for older records.
    /// </summary>
    [JsonPropertyName("alternates")]
    public IReadOnlyList<InstanceAddress> Alternates { get; init; } = [];

    /// <summary>
    /// Tags routers filter on (<c>role=worker</c>, <c>label=worker-a</c>; see <see cref="InstanceTags"/> for the
    /// limits). Empty for records of older servers.
    /// </summary>
    [JsonPropertyName("tags")]
    public IReadOnlyDictionary<string, string> Tags { get; init; } = InstanceTags.None;

    /// <summary>
    /// When the instance first registered this record (UTC, the registering process's clock), so tools can show
    /// an instance's age. A server sets it and keeps it across re-registrations (new tags,
    /// a replaced lease). Null for records of older servers.
    /// </summary>
    [JsonPropertyName("registered_at")]
    public DateTimeOffset? RegisteredAt { get; init; }

    /// <summary>Free-form labels (e.g. a server name or a role).</summary>
    [JsonPropertyName("metadata")]
    public IReadOnlyDictionary<string, string> Metadata { get; init; } = new Dictionary<string, string>();

    /// <summary>The endpoint this record belongs to.</summary>
    [JsonIgnore]
    public EndpointId EndpointId => new(Namespace, Component, Endpoint);
}

/// <summary>A transport and the address an instance serves it on.</summary>
/// <param name="Transport"><c>quic</c> or <c>tcp</c>.</param>
/// <param name="Address"><c>host:port</c>.</param>
public sealed record InstanceAddress(
    [property: JsonPropertyName("transport")] string Transport,
    [property: JsonPropertyName("address")] string Address);

[JsonSerializable(typeof(InstanceRecord))]
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
internal sealed partial class DiscoveryJsonContext : JsonSerializerContext;
