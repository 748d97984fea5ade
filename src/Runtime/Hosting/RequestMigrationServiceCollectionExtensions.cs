using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Serving;

namespace RequestMigration.Hosting;

/// <summary>
/// Adds the runtime, endpoints and routers to a host. Options come from the <c>RequestMigration</c>
/// configuration section, then the <c>DYN_*</c> keys of the same configuration (environment variables in a
/// default host) override them; everything is validated when the runtime is first resolved.
/// </summary>
public static class RequestMigrationServiceCollectionExtensions
{
    /// <summary>Registers <see cref="RequestMigrationRuntime"/> as a singleton.</summary>
    /// <param name="services">The services.</param>
    /// <param name="configuration">Configuration holding the <c>RequestMigration</c> section and/or <c>DYN_*</c> keys.</param>
    /// <param name="configure">Last-word changes to the options.</param>
    public static IServiceCollection AddRequestMigration(this IServiceCollection services, IConfiguration configuration, Action<RuntimeOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        services.AddOptions<RuntimeOptions>()
            .Bind(configuration.GetSection(RuntimeOptions.SectionName))
            .PostConfigure<IServiceProvider>((o, sp) =>
            {
                o.ApplyEnvironment(name => configuration[name]);
                o.EnvironmentName ??= sp.GetService<IHostEnvironment>()?.EnvironmentName;
                configure?.Invoke(o);
            })
            .Validate(o =>
            {
                o.Validate();
                return true;
            })
            .ValidateOnStart();
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton(sp => new RequestMigrationRuntime(
            sp.GetRequiredService<IOptions<RuntimeOptions>>().Value,
            sp.GetService<ILoggerFactory>(),
            sp.GetRequiredService<TimeProvider>()));
        return services;
    }

    /// <summary>
    /// Serves an endpoint from this host. All endpoints added this way share one server (one instance id),
    /// started with the host and stopped gracefully with it.
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="endpointPath"><c>namespace/component/endpoint</c>.</param>
    /// <param name="handler">Creates the handler from the service provider.</param>
    /// <param name="metadata">Labels published in the instance record.</param>
    public static IServiceCollection AddRequestMigrationEndpoint<TRequest, TResponse>(
        this IServiceCollection services,
        string endpointPath,
        Func<IServiceProvider, EndpointHandler<TRequest, TResponse>> handler,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        var id = EndpointId.Parse(endpointPath);
        ArgumentNullException.ThrowIfNull(handler);
        services.AddSingleton(new EndpointRegistration((server, sp) => server.AddEndpoint(id, handler(sp), metadata)));
        if (!services.Any(d => d.ImplementationType == typeof(EndpointServerHostedService)))
        {
            services.AddHostedService<EndpointServerHostedService>();
        }

        return services;
    }

    /// <summary>Registers a <see cref="PushRouter{TRequest, TResponse}"/> singleton for one endpoint.</summary>
    /// <param name="services">The services.</param>
    /// <param name="endpointPath"><c>namespace/component/endpoint</c>.</param>
    /// <param name="configure">Router options (defaults plus <c>DYN_INHIBITED_DURATION_SECS</c>).</param>
    public static IServiceCollection AddPushRouter<TRequest, TResponse>(this IServiceCollection services, string endpointPath, Action<RouterOptions>? configure = null)
    {
        var id = EndpointId.Parse(endpointPath);
        services.TryAddSingleton(sp =>
        {
            var config = sp.GetService<IConfiguration>();
            var options = new RouterOptions().ApplyEnvironment(config is null ? null : name => config[name]);
            configure?.Invoke(options);
            return sp.GetRequiredService<RequestMigrationRuntime>().CreateRouter<TRequest, TResponse>(id, options);
        });
        return services;
    }

    internal sealed record EndpointRegistration(Action<EndpointServer, IServiceProvider> Apply);

    private sealed class EndpointServerHostedService(RequestMigrationRuntime runtime, IEnumerable<EndpointRegistration> registrations, IServiceProvider services) : IHostedService
    {
        private EndpointServer? _server;
        private volatile bool _stopping;

        public async Task StartAsync(CancellationToken cancellationToken)
        {
            _server = runtime.CreateServer();
            foreach (var r in registrations)
            {
                r.Apply(_server, services);
            }

            await _server.StartAsync(cancellationToken).ConfigureAwait(false);

            // A server that stopped by itself (its listener failed) has left discovery; a process that serves
            // nothing should exit so whatever supervises it starts a fresh one.
            var lifetime = services.GetService<IHostApplicationLifetime>();
            _ = _server.Completion.ContinueWith(
                _ =>
                {
                    if (!_stopping)
                    {
                        lifetime?.StopApplication();
                    }
                },
                CancellationToken.None,
                TaskContinuationOptions.ExecuteSynchronously,
                TaskScheduler.Default);
        }

        public Task StopAsync(CancellationToken cancellationToken)
        {
            _stopping = true;
            return _server?.StopAsync(cancellationToken) ?? Task.CompletedTask;
        }
    }
}
