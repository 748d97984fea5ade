namespace RequestMigration.Routing;

/// <summary>How a <see cref="PushRouter{TRequest, TResponse}"/> picks an instance.</summary>
public enum RouterMode
{
    /// <summary>Each request goes to the next available instance in turn (default).</summary>
    RoundRobin,

    /// <summary>Each request goes to a uniformly random available instance.</summary>
    Random,

    /// <summary>Requests name the instance (<see cref="PushRouter{TRequest, TResponse}.DirectAsync"/>); no failover to others.</summary>
    Direct,
}

/// <summary>Options of a router, validated when the router is created.</summary>
public sealed class RouterOptions
{
    /// <summary>Environment variable for <see cref="InhibitDuration"/>, in seconds.</summary>
    public const string InhibitDurationEnvironmentVariable = "DYN_INHIBITED_DURATION_SECS";

    /// <summary>Instance selection. Default round robin.</summary>
    public RouterMode Mode { get; set; } = RouterMode.RoundRobin;

    /// <summary>Attempts per request, the first included (1..10). Default 3.</summary>
    public int MaxAttempts { get; set; } = 3;

    /// <summary>
    /// How long an instance reported down stays out of rotation at most; reconcile also runs on every
    /// discovery change (<c>DYN_INHIBITED_DURATION_SECS</c>). Default 5 s; zero disables inhibiting.
    /// </summary>
    public TimeSpan InhibitDuration { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Migrate streams instead of restarting them (<c>DYN_MIGRATION</c>; default off). A retry then carries the
    /// number of items the consumer already has (<see cref="Serving.RequestContext.ResumeFrom"/>), the handler
    /// continues from there, and failed attempts are not shown to the consumer as error items: it sees one
    /// stream with nothing lost or repeated. Only for endpoints whose handlers honour <c>ResumeFrom</c>.
    /// </summary>
    public bool Migration { get; set; }

    /// <summary>Applies <c>DYN_INHIBITED_DURATION_SECS</c> and <c>DYN_MIGRATION</c> when set.</summary>
    /// <exception cref="ArgumentException">The value is not a number of seconds.</exception>
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

        if (!Enum.IsDefined(Mode))
        {
            throw new ArgumentOutOfRangeException(nameof(Mode), Mode, "unknown router mode");
        }
    }
}
