namespace RequestMigration.Routing;

// Kept with the hosting code: synchronous disposal exists for containers (Microsoft.Extensions.DependencyInjection
// refuses to dispose synchronously what is only IAsyncDisposable), not for the router's own logic.
public sealed partial class PushRouter<TRequest, TResponse> : IDisposable
{
    /// <summary>
    /// Stops watching discovery, blocking until it has; for containers disposed synchronously. Prefer
    /// <see cref="DisposeAsync"/>.
    /// </summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();
}
