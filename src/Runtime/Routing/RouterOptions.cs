using RequestMigration.LoadBalancing;

namespace RequestMigration.Routing;

/// <summary>Options of a router, validated when the router is created.</summary>
public sealed class RouterOptions
{
    /// <summary>Environment variable for <see cref="InhibitDuration"/>, in seconds.</summary>
    public const string InhibitDurationEnvironmentVariable = "DYN_INHIBITED_DURATION_SECS";

    /// <summary>Environment variable for <see cref="LoadBalancingPolicy"/>.</summary>
    public const string LoadBalancingPolicyEnvironmentVariable = "DYN_LB_POLICY";

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

    /// <summary>Applies <c>DYN_INHIBITED_DURATION_SECS</c>, <c>DYN_MIGRATION</c>, <c>DYN_LB_POLICY</c> and <c>DYN_FIRST_ITEM_TIMEOUT_SECS</c> when set.</summary>
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

        if (environment(FirstItemTimeoutEnvironmentVariable) is { Length: > 0 } first)
        {
            var t = EnvironmentValues.ParseSeconds(FirstItemTimeoutEnvironmentVariable, first);
            FirstItemTimeout = t == TimeSpan.Zero ? null : t;
        }

        return this;
    }

    /// <summary>Rejects values that cannot work, naming the option.</summary>
    public void Validate()
    {
        if (MaxAttempts is < 1 or > 10)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxAttempts), MaxAttempts, "must be between 1 and 10");
        }

        if (InhibitDuration < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(InhibitDuration), InhibitDuration, "must not be negative");
        }

        if (FirstItemTimeout is { } first && first <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(FirstItemTimeout), first, "must be positive (null turns it off)");
        }

        if (string.IsNullOrWhiteSpace(LoadBalancingPolicy))
        {
            throw new ArgumentException("LoadBalancingPolicy (DYN_LB_POLICY) must name a policy", nameof(LoadBalancingPolicy));
        }
    }
}
