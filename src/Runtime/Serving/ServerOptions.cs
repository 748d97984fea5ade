using RequestMigration.Discovery.Instances;

namespace RequestMigration.Serving;

/// <summary>Options of one <see cref="EndpointServer"/> (what it publishes about itself), validated when the server is created.</summary>
public sealed class ServerOptions
{
    /// <summary>Environment variable for <see cref="Tags"/>: <c>role=worker,label=worker-a,zone=b</c>.</summary>
    public const string TagsEnvironmentVariable = "DYN_INSTANCE_TAGS";

    /// <summary>
    /// Tags written into every instance record of the server (<c>DYN_INSTANCE_TAGS</c>); routers can be limited
    /// to instances whose tags match (<see cref="Routing.RouterOptions.Filter"/>). Limits: see
    /// <see cref="InstanceTags"/>. Default none. Change them on a running server with
    /// <see cref="EndpointServer.UpdateTagsAsync"/>.
    /// </summary>
    public IReadOnlyDictionary<string, string> Tags { get; set; } = InstanceTags.None;

    /// <summary>Applies <c>DYN_INSTANCE_TAGS</c> when set.</summary>
    /// <exception cref="ArgumentException">The value is malformed; the message names the bad part.</exception>
    public ServerOptions ApplyEnvironment(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        if (environment(TagsEnvironmentVariable) is { Length: > 0 } tags)
        {
            Tags = InstanceTags.Parse(tags, TagsEnvironmentVariable);
        }

        return this;
    }

    /// <summary>Rejects values that cannot work, naming the option.</summary>
    public void Validate() => InstanceTags.Validate(Tags ?? throw new ArgumentNullException(nameof(Tags)), "ServerOptions.Tags (DYN_INSTANCE_TAGS)");
}
