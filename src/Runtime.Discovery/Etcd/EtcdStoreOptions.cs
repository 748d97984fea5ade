namespace RequestMigration.Discovery.Etcd;

/// <summary>Options of the etcd backend.</summary>
public sealed class EtcdStoreOptions
{
    /// <summary>Environment variable with comma-separated endpoints.</summary>
    public const string EndpointsEnvironmentVariable = "ETCD_ENDPOINTS";

    /// <summary>etcd endpoints (<c>ETCD_ENDPOINTS</c>, comma-separated); default <c>http://127.0.0.1:2379</c>.</summary>
    public IList<Uri> Endpoints { get; set; } = [new Uri("http://127.0.0.1:2379")];

    /// <summary>Deadline of each etcd call, so a dead etcd fails fast. Default 2 s.</summary>
    public TimeSpan CallTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>First pause before a broken watch is re-established; doubles per failed attempt. Default 200 ms.</summary>
    public TimeSpan WatchRetryInitialDelay { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>Longest pause between attempts to re-establish a broken watch. Default 3 s.</summary>
    public TimeSpan WatchRetryMaxDelay { get; set; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// How long an endpoint that failed (down, unreachable, too slow, or a member without a leader, such as one
    /// cut off from its peers) is skipped while other endpoints are available. Default 30 s; zero skips none,
    /// though a call still moves on to the next endpoint after a failure.
    /// </summary>
    public TimeSpan EndpointQuarantine { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Idle time after which an HTTP/2 ping checks the connection of an open watch, so a silently dead
    /// etcd (no TCP reset) is noticed. Default 10 s; etcd rejects pings more often than every 5 s.
    /// </summary>
    public TimeSpan KeepAlivePingDelay { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>Parses a comma-separated endpoint list; each must be an absolute http or https URI.</summary>
    /// <exception cref="ArgumentException">An entry is not such a URI; the message names it.</exception>
    public static IList<Uri> ParseEndpoints(string value)
    {
        var list = new List<Uri>();
        foreach (var raw in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (!Uri.TryCreate(raw, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps) || uri.Port <= 0)
            {
                throw new ArgumentException($"{EndpointsEnvironmentVariable}: '{raw}' is not an endpoint like http://127.0.0.1:2379", EndpointsEnvironmentVariable);
            }

            list.Add(uri);
        }

        if (list.Count == 0)
        {
            throw new ArgumentException($"{EndpointsEnvironmentVariable}='{value}' names no endpoint", EndpointsEnvironmentVariable);
        }

        return list;
    }

    /// <summary>Rejects values that cannot work, naming the option.</summary>
    public void Validate()
    {
        if (Endpoints is null || Endpoints.Count == 0)
        {
            throw new ArgumentException("etcd: at least one endpoint is required", nameof(Endpoints));
        }

        if (CallTimeout <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(CallTimeout), CallTimeout, "etcd call timeout must be positive");
        }

        if (WatchRetryInitialDelay <= TimeSpan.Zero || WatchRetryMaxDelay < WatchRetryInitialDelay)
        {
            throw new ArgumentOutOfRangeException(nameof(WatchRetryMaxDelay), WatchRetryMaxDelay, "etcd watch retry delays must be positive with max >= initial");
        }

        if (EndpointQuarantine < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(EndpointQuarantine), EndpointQuarantine, "etcd endpoint quarantine must not be negative");
        }

        if (KeepAlivePingDelay < TimeSpan.FromSeconds(5))
        {
            throw new ArgumentOutOfRangeException(nameof(KeepAlivePingDelay), KeepAlivePingDelay, "etcd keep-alive ping delay must be at least 5 s (etcd's minimum)");
        }
    }
}
