using System.Diagnostics.Metrics;
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
    /// <summary>
    /// Registers <see cref="RequestMigrationRuntime"/> as a singleton. Its metrics come from the container's
    /// <see cref="IMeterFactory"/> when there is one (a default host registers it), so they can be collected
    /// per container in tests.
    /// </summary>
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
            sp.GetRequiredService<TimeProvider>(),
            meterFactory: sp.GetService<IMeterFactory>()));
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

    /// <summary>
    /// Registers a <see cref="PushRouter{TRequest, TResponse}"/> singleton for one endpoint, keyed by the
    /// endpoint path: resolve it with <c>GetRequiredKeyedService&lt;PushRouter&lt;TRequest, TResponse&gt;&gt;("ns/component/endpoint")</c>
    /// or <c>[FromKeyedServices("ns/component/endpoint")]</c>. Call it once per endpoint; routers of the same types
    /// for different endpoints live side by side. While only one router of this type pair is registered it also
    /// resolves without a key.
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="endpointPath"><c>namespace/component/endpoint</c>.</param>
    /// <param name="configure">Router options (defaults plus <c>DYN_INHIBITED_DURATION_SECS</c>).</param>
    /// <exception cref="InvalidOperationException">A router of these types is already registered for this endpoint.</exception>
    public static IServiceCollection AddPushRouter<TRequest, TResponse>(this IServiceCollection services, string endpointPath, Action<RouterOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        var id = EndpointId.Parse(endpointPath);
        var endpoints = services.Where(d => d.ServiceType == typeof(RouterEndpoints<TRequest, TResponse>) && !d.IsKeyedService)
            .Select(d => d.ImplementationInstance).OfType<RouterEndpoints<TRequest, TResponse>>().SingleOrDefault();
        if (endpoints is null)
        {
            endpoints = new RouterEndpoints<TRequest, TResponse>();
            services.AddSingleton(endpoints);
            services.AddSingleton(sp => sp.GetRequiredService<RouterEndpoints<TRequest, TResponse>>().ResolveOnly(sp));
        }

        if (!endpoints.TryAdd(id.Path))
        {
            throw new InvalidOperationException($"AddPushRouter<{typeof(TRequest).Name}, {typeof(TResponse).Name}>(\"{id.Path}\") was called twice; register one router per endpoint and configure it in one call");
        }

        services.AddKeyedSingleton(id.Path, (sp, _) =>
        {
            var config = sp.GetService<IConfiguration>();
            var options = new RouterOptions().ApplyEnvironment(config is null ? null : name => config[name]);
            configure?.Invoke(options);
            return sp.GetRequiredService<RequestMigrationRuntime>().CreateRouter<TRequest, TResponse>(id, options);
        });
        return services;
    }

    /// <summary>The endpoints with a router of one type pair, so resolving without a key can say which keys exist.</summary>
    internal sealed class RouterEndpoints<TRequest, TResponse>
    {
        private readonly List<string> _paths = [];

        public bool TryAdd(string path)
        {
            lock (_paths)
            {
                if (_paths.Contains(path, StringComparer.Ordinal))
                {
                    return false;
                }

                _paths.Add(path);
                return true;
            }
        }

        /// <summary>The router, when there is exactly one of this type pair.</summary>
        /// <exception cref="InvalidOperationException">There are several; the message lists their keys.</exception>
        public PushRouter<TRequest, TResponse> ResolveOnly(IServiceProvider services)
        {
            string[] paths;
            lock (_paths)
            {
                paths = [.. _paths];
            }

            return paths.Length == 1
                ? services.GetRequiredKeyedService<PushRouter<TRequest, TResponse>>(paths[0])
                : throw new InvalidOperationException(
                    $"{paths.Length} routers of PushRouter<{typeof(TRequest).Name}, {typeof(TResponse).Name}> are registered ({string.Join(", ", paths)}); "
                    + $"resolve one by its endpoint: GetRequiredKeyedService<PushRouter<{typeof(TRequest).Name}, {typeof(TResponse).Name}>>(\"{paths[0]}\") or [FromKeyedServices(\"{paths[0]}\")]");
        }
    }

    internal sealed record EndpointRegistration(Action<EndpointServer, IServiceProvider> Apply);

    private sealed class EndpointServerHostedService(RequestMigrationRuntime runtime, IEnumerable<EndpointRegistration> registrations, IServiceProvider services) : IHostedService
    {
        private EndpointServer? _server;
        private volatile bool _stopping;

        public async Task StartAsync(CancellationToken cancellationToken)
        {
            var config = services.GetService<IConfiguration>();
            _server = runtime.CreateServer(new ServerOptions().ApplyEnvironment(config is null ? null : name => config[name]));
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
