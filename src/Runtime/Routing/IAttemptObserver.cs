using RequestMigration.Discovery.Instances;

namespace RequestMigration.Routing;

/// <summary>
/// Watches the attempts of one call (<see cref="PushRouter{TRequest, TResponse}.GenerateAsync(TRequest, IAttemptObserver?, CancellationToken)"/>):
/// which instance each attempt goes to and how it ends, so tools and logs can tell which instance produced
/// which items (everything between an attempt's start and its end came from that instance). Called on the
/// consumer's enumeration, in order; keep it quick.
/// </summary>
public interface IAttemptObserver
{
    /// <summary>An attempt is about to connect to <paramref name="instance"/>.</summary>
    /// <param name="instance">The instance chosen.</param>
    /// <param name="attempt">The attempt number sent to the server (1-based; free retries count too).</param>
    /// <param name="resumeFrom">Items the consumer already has (migration resumes after them); 0 otherwise.</param>
    void OnAttemptStarted(InstanceRecord instance, int attempt, long resumeFrom);

    /// <summary>The attempt ended: <paramref name="error"/> is null when the response completed.</summary>
    /// <param name="instance">The instance it ran on.</param>
    /// <param name="attempt">The attempt number.</param>
    /// <param name="items">Items it delivered.</param>
    /// <param name="error">Why it failed, or null.</param>
    void OnAttemptEnded(InstanceRecord instance, int attempt, long items, string? error);
}
