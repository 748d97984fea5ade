using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Tools.Cli.Output;

namespace RequestMigration.Tools.Cli.Commands;

/// <summary>
/// <c>rmctl call ENDPOINT --input TEXT</c>: one request through a real <see cref="PushRouter{TRequest, TResponse}"/>,
/// printing each item with the instance it came from and each failover.
/// </summary>
internal static class CallCommand
{
    public static Command Create(GlobalOptions global)
    {
        var endpoint = new Argument<string>("ENDPOINT") { Description = "namespace/component/endpoint, e.g. demo/backend/generate" };
        var input = new Option<string>("--input", "-i") { Description = "The request: sent as a JSON string (see --input-json)", Required = true, HelpName = "TEXT" };
        var inputJson = new Option<bool>("--input-json") { Description = "Send --input as a JSON document instead of a string" };
        var migration = new Option<bool>("--migration") { Description = "Continue a broken stream on another instance from where it stopped (default: DYN_MIGRATION)" };
        var policy = new Option<string?>("--policy") { Description = "Load-balancing policy: RoundRobin, Random, LeastConnections, PowerOfTwoChoices (default: DYN_LB_POLICY, else RoundRobin)", HelpName = "NAME" };
        var wait = new Option<double>("--wait")
        {
            Description = "Seconds to wait for an instance to appear",
            DefaultValueFactory = _ => 10,
            HelpName = "SECONDS",
        };
        var command = new Command("call", "Stream one request through a PushRouter: each item with its instance, and each failover")
        {
            endpoint, input, inputJson, migration, policy, wait,
        };
        command.SetAction((parse, ct) => CommandContext.RunAsync(parse, global, ct, (ctx, token) => RunAsync(
            ctx,
            new CallArguments(parse.GetValue(endpoint)!, parse.GetValue(input)!, parse.GetValue(inputJson), parse.GetValue(migration), parse.GetValue(policy), parse.GetValue(wait)),
            token)));
        return command;
    }

    private static async Task<int> RunAsync(CommandContext ctx, CallArguments args, CancellationToken ct)
    {
        if (!EndpointId.TryParse(args.Endpoint, out var endpoint))
        {
            throw new UsageException($"'{args.Endpoint}' is not an endpoint: expected namespace/component/endpoint, e.g. demo/backend/generate");
        }

        if (!double.IsFinite(args.WaitSeconds) || args.WaitSeconds < 0 || args.WaitSeconds > 3600)
        {
            throw new UsageException($"--wait {args.WaitSeconds.ToString(CultureInfo.InvariantCulture)}: expected seconds between 0 and 3600");
        }

        var request = ParseInput(args);
        var (runtimeOptions, routerOptions) = ResolveOptions(ctx, args);

        // One read first: a router keeps retrying an unreachable store in the background, which would turn into a
        // vague "no instances" after the wait; this names the store at once.
        await using (var probe = StoreConnection.Open(runtimeOptions.Discovery, ctx.LoggerFactory))
        {
            await probe.Store.ListAsync(InstanceKeys.Prefix(endpoint), ct).ConfigureAwait(false);
        }

        var store = StoreConnection.Describe(runtimeOptions.Discovery);
        await using var runtime = CreateRuntime(ctx, runtimeOptions);
        PushRouter<JsonElement, JsonElement> router;
        try
        {
            router = runtime.CreateRouter<JsonElement, JsonElement>(endpoint, routerOptions);
        }
        catch (ArgumentException ex)
        {
            // An unknown policy name; the message lists the valid ones.
            throw new UsageException(ErrorText.Of(ex));
        }
        catch (FileNotFoundException ex)
        {
            throw new CliFailureException(ex.Message, ex);
        }

        try
        {
            await router.WaitForInstancesAsync(TimeSpan.FromSeconds(args.WaitSeconds), ct).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            throw new CliFailureException($"no instance of {endpoint.Path} registered in {store} within {args.WaitSeconds.ToString(CultureInfo.InvariantCulture)} s (see rmctl instances)");
        }

        var printer = new CallPrinter(ctx.Output, routerOptions.Migration);
        try
        {
            await foreach (var item in router.GenerateAsync(request, printer, ct).ConfigureAwait(false))
            {
                if (item.IsError)
                {
                    printer.OnErrorItem(item.Comment ?? "error");
                }
                else
                {
                    printer.OnItem(item.Data);
                }
            }
        }
        catch (RoutingException ex)
        {
            printer.OnFailed(ex.Message);
            return ExitCodes.Failure;
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            printer.OnInterrupted();
            return ExitCodes.Interrupted;
        }

        printer.OnCompleted();
        return ExitCodes.Ok;
    }

    private static JsonElement ParseInput(CallArguments args)
    {
        if (!args.InputJson)
        {
            return JsonSerializer.SerializeToElement(args.Input, CliCallJsonContext.Default.String);
        }

        try
        {
            using var doc = JsonDocument.Parse(args.Input);
            return doc.RootElement.Clone();
        }
        catch (JsonException ex)
        {
            throw new UsageException($"--input is not JSON (--input-json): {ex.Message}");
        }
    }

    private static (RuntimeOptions Runtime, RouterOptions Router) ResolveOptions(CommandContext ctx, CallArguments args)
    {
        RuntimeOptions runtime;
        RouterOptions router;
        try
        {
            // Every DYN_* setting a client honours, as the example client does; flags win.
            runtime = new RuntimeOptions().ApplyEnvironment();
            router = new RouterOptions().ApplyEnvironment();
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ErrorText.Of(ex));
        }

        ctx.Flags.ApplyTo(runtime.Discovery);
        if (args.Migration)
        {
            router.Migration = true;
        }

        if (args.Policy is { } p)
        {
            router.LoadBalancingPolicy = p;
        }

        try
        {
            runtime.Validate();
            router.Validate();
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ErrorText.Of(ex));
        }

        return (runtime, router);
    }

    private static RequestMigrationRuntime CreateRuntime(CommandContext ctx, RuntimeOptions options)
    {
        try
        {
            return new RequestMigrationRuntime(options, ctx.LoggerFactory);
        }
        catch (ArgumentException ex)
        {
            throw new UsageException(ErrorText.Of(ex));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new CliFailureException($"{StoreConnection.Describe(options.Discovery)}: cannot open it: {ex.Message}", ex);
        }
    }

    private sealed record CallArguments(string Endpoint, string Input, bool InputJson, bool Migration, string? Policy, double WaitSeconds);
}

[System.Text.Json.Serialization.JsonSerializable(typeof(string))]
internal sealed partial class CliCallJsonContext : System.Text.Json.Serialization.JsonSerializerContext;
