using System.CommandLine;
using System.Text.Json.Nodes;
using RequestMigration.Discovery.Instances;
using RequestMigration.Tools.Cli.Output;
using Spectre.Console;

namespace RequestMigration.Tools.Cli.Commands;

/// <summary><c>rmctl instances [ENDPOINT-PREFIX]</c>: what discovery holds now.</summary>
internal static class InstancesCommand
{
    public static Command Create(GlobalOptions global)
    {
        var prefix = new Argument<string?>("ENDPOINT-PREFIX")
        {
            Description = "namespace, namespace/component or namespace/component/endpoint (default: every endpoint)",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var command = new Command("instances", "List the registered instances: endpoint, instance id, address, transport, tags and age") { prefix };
        command.SetAction((parse, ct) => CommandContext.RunAsync(parse, global, ct, (ctx, token) => RunAsync(ctx, parse.GetValue(prefix), token)));
        return command;
    }

    private static async Task<int> RunAsync(CommandContext ctx, string? prefix, CancellationToken ct)
    {
        var endpointPrefix = InstanceEntries.Normalize(prefix);
        await using var connection = ctx.OpenStore();
        var instances = (await InstanceEntries.ListAsync(connection, endpointPrefix, ct).ConfigureAwait(false))
            .OrderBy(i => i.Record.EndpointId.Path, StringComparer.Ordinal)
            .ThenBy(i => i.Record.InstanceId)
            .ToList();
        var now = DateTimeOffset.UtcNow;
        if (ctx.Output.Json)
        {
            var list = new JsonArray();
            foreach (var (entry, record) in instances)
            {
                var json = CliOutput.InstanceJson(record, now);
                json["key"] = entry.Key;
                json["lease"] = entry.LeaseId == 0 ? null : CliOutput.Lease(entry.LeaseId);
                list.Add(json);
            }

            ctx.Output.WriteJson(new JsonObject
            {
                ["store"] = connection.Description,
                ["prefix"] = endpointPrefix,
                ["instances"] = list,
            });
            return ExitCodes.Ok;
        }

        if (instances.Count == 0)
        {
            ctx.Output.MarkupLine($"No instances registered{(endpointPrefix.Length == 0 ? string.Empty : $" under {CliOutput.Esc(endpointPrefix)}")} in {CliOutput.Esc(connection.Description)}.");
            return ExitCodes.Ok;
        }

        var table = CliOutput.WithInstanceColumns(new Table().Border(TableBorder.Simple));
        foreach (var (_, r) in instances)
        {
            CliOutput.AddInstanceRow(table, r, r.RegisteredAt is { } at ? CliOutput.Age(now - at) : "-");
        }

        ctx.Output.Console.Write(table);
        ctx.Output.MarkupLine($"[grey]{instances.Count} instance(s) in {CliOutput.Esc(connection.Description)}[/]");
        return ExitCodes.Ok;
    }
}
