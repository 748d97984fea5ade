using RequestMigration.Discovery.Instances;
using RequestMigration.Health;
using RequestMigration.LoadBalancing;

namespace RequestMigration.Routing;

/// <summary>Options of a router, validated when the router is created.</summary>
public sealed class RouterOptions
{
    /// <summary>Environment variable for <see cref="InhibitDuration"/>, in seconds.</summary>
    public const string InhibitDurationEnvironmentVariable = "DYN_INHIBITED_DURATION_SECS";

    /// <summary>Environment variable for <see cref="LoadBalancingPolicy"/>.</summary>
    public const string LoadBalancingPolicyEnvironmentVariable = "DYN_LB_POLICY";

    /// <summary>Environment variable for <see cref="Filter"/>: <c>role=worker,zone=b</c>.</summary>
    public const string FilterEnvironmentVariable = "DYN_ROUTER_FILTER";

    /// <summary>Environment variable for <see cref="FirstItemTimeout"/>, in seconds (0 = off).</summary>
    public const string FirstItemTimeoutEnvironmentVariable = "DYN_FIRST_ITEM_TIMEOUT_SECS";

    /// <summary>
    /// How the router picks an instance for each attempt (<c>DYN_LB_POLICY</c>): one of
    /// <see cref="LoadBalancingPolicies"/> or a name registered in
    /// <see cref="RequestMigrationRuntime.LoadBalancingPolicies"/>. Default round robin. To send a request to
    /// one named instance, call <see cref="PushRouter{TRequest, TResponse}.DirectAsync"/> instead.
    /// </summary>
    public string LoadBalancingPolicy { get; set; } = LoadBalancingPolicies.RoundRobin;

    /// <summary>
    /// Route only to instances whose tags (<see cref="Discovery.Instances.InstanceRecord.Tags"/>) include every
    /// pair here (<c>DYN_ROUTER_FILTER</c>, e.g. <c>role=worker</c>). An instance whose tags change moves in or
    /// out of the router's view as discovery reports it. Default empty: every instance.
    /// </summary>
    public IReadOnlyDictionary<string, string> Filter { get; set; } = InstanceTags.None;

    /// <summary>
    /// Attempts per request, the first included (1..10). Default 3. Retries that cost the request nothing do
    /// not count: an instance that refused the connection before anything was sent, a pooled connection the
    /// server had closed while idle, an instance that answered "shutting down". With <see cref="Migration"/>
    /// on, an attempt that delivered new items before it broke does not count either (the request is making
    /// progress, and the retry resumes after those items): the limit then bounds attempts that got nowhere.
    /// </summary>
    public int MaxAttempts { get; set; } = 3;

    /// <summary>
    /// How long an instance reported down stays out of rotation, counted from the moment it was reported
    /// (<c>DYN_INHIBITED_DURATION_SECS</c>). Each instance returns on its own deadline; discovery changes do
    /// not bring it back early. Default 5 s; zero disables inhibiting.
    /// </summary>
    public TimeSpan InhibitDuration { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Passive health: how many failed attempts in a row take an instance out of rotation
    /// (<c>DYN_FAILURES_BEFORE_INHIBIT</c>; 1..100). Default 1: the first failure does, as in the seed. Higher
    /// values ride out an instance's occasional failure; a request never retries the instance that just
    /// failed it either way. A success resets the count.
    /// </summary>
    public int FailuresBeforeInhibit { get; set; } = 1;

    /// <summary>
    /// How long one call may wait in total, when a retry finds every instance inhibited, for the earliest to
    /// come back or a new one to appear (<c>DYN_MAX_RETRY_WAIT_SECS</c>). The wait ends as soon as one is
    /// available, with a little random jitter so callers don't all return at once, and honours cancellation;
    /// when the budget is spent the retry fails with <c>no instances found</c> (and the call ends with the last
    /// real error). Default 10 s, enough for two inhibit periods; zero retries at once as the seed's client does.
    /// </summary>
    public TimeSpan MaxRetryWait { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Active health (<c>DYN_HEARTBEAT=true</c> and the <c>DYN_HEARTBEAT_*</c> variables): ping every instance the
    /// router has a live stream to and break those streams (failing them over, or migrating them) when the
    /// instance stops answering, before a hung instance stalls its consumers. Null (default): off, which suits
    /// short requests; long streams (token streaming) want it on. See <see cref="HeartbeatOptions"/>.
    /// </summary>
    public HeartbeatOptions? Heartbeat { get; set; }

    /// <summary>
    /// Migrate streams instead of restarting them (<c>DYN_MIGRATION</c>; default off). A retry then carries the
    /// number of items the consumer already has (<see cref="Serving.RequestContext.ResumeFrom"/>), the handler
    /// continues from there, and failed attempts are not shown to the consumer as error items: it sees one
    /// stream with nothing lost or repeated. Only for endpoints whose handlers honour <c>ResumeFrom</c>.
    /// </summary>
    public bool Migration { get; set; }

    /// <summary>
    /// How long an attempt may wait for the first frame of its response before it counts as failed and the
    /// request moves to another instance (<c>DYN_FIRST_ITEM_TIMEOUT_SECS</c>). Guards against a server that
    /// accepts a request and then stalls. Default null: no limit (a long first item, such as an LLM's prompt
    /// processing, is legitimate). Must be positive when set.
    /// </summary>
    public TimeSpan? FirstItemTimeout { get; set; }

    /// <summary>Applies the <c>DYN_*</c> router variables named on each property when set.</summary>
    /// <exception cref="ArgumentException">A value is malformed; the message names the variable.</exception>
    public RouterOptions ApplyEnvironment(Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        if (environment(InhibitDurationEnvironmentVariable) is { Length: > 0 } v)
        {
            InhibitDuration = EnvironmentValues.ParseSeconds(InhibitDurationEnvironmentVariable, v);
        }

        if (environment("DYN_MIGRATION") is { Length: > 0 } m)
        {
            Migration = EnvironmentValues.ParseBool("DYN_MIGRATION", m);
        }

        if (environment(LoadBalancingPolicyEnvironmentVariable) is { Length: > 0 } policy)
        {
            LoadBalancingPolicy = policy.Trim();
        }

        if (environment(FilterEnvironmentVariable) is { Length: > 0 } filter)
        {
            Filter = InstanceTags.Parse(filter, FilterEnvironmentVariable);
        }

        if (environment("DYN_FAILURES_BEFORE_INHIBIT") is { Length: > 0 } failures)
        {
            FailuresBeforeInhibit = EnvironmentValues.ParseInt("DYN_FAILURES_BEFORE_INHIBIT", failures, 1, 100);
        }

        if (environment("DYN_MAX_RETRY_WAIT_SECS") is { Length: > 0 } wait)
        {
            MaxRetryWait = EnvironmentValues.ParseSeconds("DYN_MAX_RETRY_WAIT_SECS", wait);
        }

        ApplyHeartbeatEnvironment(environment);
        if (environment(FirstItemTimeoutEnvironmentVariable) is { Length: > 0 } first)
        {
            var t = EnvironmentValues.ParseSeconds(FirstItemTimeoutEnvironmentVariable, first);
            FirstItemTimeout = t == TimeSpan.Zero ? null : t;
        }

        return this;
    }

    private void ApplyHeartbeatEnvironment(Func<string, string?> environment)
    {
        if (environment("DYN_HEARTBEAT") is { Length: > 0 } on)
        {
            Heartbeat = EnvironmentValues.ParseBool("DYN_HEARTBEAT", on) ? Heartbeat ?? new HeartbeatOptions() : null;
        }

        if (Heartbeat is not { } h)
        {
            return;
        }

        if (environment("DYN_HEARTBEAT_INTERVAL_SECS") is { Length: > 0 } interval)
        {
            h.Interval = EnvironmentValues.ParseSeconds("DYN_HEARTBEAT_INTERVAL_SECS", interval);
        }

        if (environment("DYN_HEARTBEAT_TIMEOUT_SECS") is { Length: > 0 } timeout)
        {
            h.Timeout = EnvironmentValues.ParseSeconds("DYN_HEARTBEAT_TIMEOUT_SECS", timeout);
        }

        if (environment("DYN_HEARTBEAT_MISSES") is { Length: > 0 } misses)
        {
            h.MissesBeforeFailure = EnvironmentValues.ParseInt("DYN_HEARTBEAT_MISSES", misses, 1, 100);
        }

        if (environment("DYN_HEARTBEAT_DETECTOR") is { Length: > 0 } detector)
        {
            h.Detector = HeartbeatOptions.ParseDetector(detector);
        }

        if (environment("DYN_HEARTBEAT_PHI_THRESHOLD") is { Length: > 0 } phi)
        {
            h.PhiThreshold = double.TryParse(phi, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var t) && t > 0 && double.IsFinite(t)
                ? t
                : throw new ArgumentException($"DYN_HEARTBEAT_PHI_THRESHOLD='{phi}' is not a positive number", "DYN_HEARTBEAT_PHI_THRESHOLD");
        }
    }

    /// <summary>Rejects values that cannot work, naming the option.</summary>
    public void Validate()
    {
        Heartbeat?.Validate();
        if (MaxAttempts is < 1 or > 10)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxAttempts), MaxAttempts, "must be between 1 and 10");
        }

        if (InhibitDuration < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(InhibitDuration), InhibitDuration, "must not be negative");
        }

        if (FailuresBeforeInhibit is < 1 or > 100)
        {
            throw new ArgumentOutOfRangeException(nameof(FailuresBeforeInhibit), FailuresBeforeInhibit, "must be between 1 and 100");
        }

        if (MaxRetryWait < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxRetryWait), MaxRetryWait, "must not be negative");
        }

        if (FirstItemTimeout is { } first && first <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(FirstItemTimeout), first, "must be positive (null turns it off)");
        }

        InstanceTags.Validate(Filter ?? throw new ArgumentNullException(nameof(Filter)), "RouterOptions.Filter (DYN_ROUTER_FILTER)");
        if (string.IsNullOrWhiteSpace(LoadBalancingPolicy))
        {
            throw new ArgumentException("LoadBalancingPolicy (DYN_LB_POLICY) must name a policy", nameof(LoadBalancingPolicy));
        }
    }
}
