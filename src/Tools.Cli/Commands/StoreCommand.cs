using System.CommandLine;
using System.Text;
using System.Text.Json.Nodes;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Tools.Cli.Output;
using Spectre.Console;

namespace RequestMigration.Tools.Cli.Commands;

/// <summary><c>rmctl store get|put|rm|ls</c>: raw key-value access for debugging; writes need <c>--yes</c>.</summary>
internal static class StoreCommand
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    public static Command Create(GlobalOptions global)
    {
        var command = new Command("store", "Raw store access for debugging: get, put, rm, ls (put and rm need --yes)");
        command.Subcommands.Add(Get(global));
        command.Subcommands.Add(Put(global));
        command.Subcommands.Add(Remove(global));
        command.Subcommands.Add(List(global));
        return command;
    }

    private static Argument<string> KeyArgument() => new("KEY") { Description = "The key, e.g. v1/instances/demo/backend/generate/694d1a2b3c4d5e6f" };

    private static Option<bool> YesOption() => new("--yes", "-y") { Description = "Confirm the change (required: this writes to the store every process reads)" };

    private static Command Get(GlobalOptions global)
    {
        var key = KeyArgument();
        var command = new Command("get", "Print a key's value (text as is, other bytes as base64)") { key };
        command.SetAction((parse, ct) => CommandContext.RunAsync(parse, global, ct, async (ctx, token) =>
        {
            var k = ValidKey(parse.GetValue(key)!);
            await using var connection = ctx.OpenStore();
            var entry = await connection.Store.GetAsync(k, token).ConfigureAwait(false)
                ?? throw new CliFailureException($"key '{k}' not found in {connection.Description}");
            var text = AsText(entry.Value);
            if (ctx.Output.Json)
            {
                var json = EntryJson(connection, entry);
                ctx.Output.WriteJson(json);
                return ExitCodes.Ok;
            }

            if (text is null)
            {
                CliOutput.Note($"note: the value of '{k}' is not UTF-8 text; printed as base64");
                Console.Out.WriteLine(Convert.ToBase64String(entry.Value.Span));
            }
            else
            {
                Console.Out.WriteLine(text);
            }

            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command Put(GlobalOptions global)
    {
        var key = KeyArgument();
        var value = new Argument<string>("VALUE") { Description = "The value as text; - reads it from stdin" };
        var yes = YesOption();
        var command = new Command("put", "Create or replace a key (no lease); needs --yes") { key, value, yes };
        command.SetAction((parse, ct) => CommandContext.RunAsync(parse, global, ct, async (ctx, token) =>
        {
            var k = ValidKey(parse.GetValue(key)!);
            var options = ctx.StoreOptions();
            RequireYes(parse.GetValue(yes), "put", k, options);
            var raw = parse.GetValue(value)!;
            var bytes = raw == "-" ? await ReadStdinAsync(token).ConfigureAwait(false) : Encoding.UTF8.GetBytes(raw);
            if (k.StartsWith(InstanceKeys.Bucket + "/", StringComparison.Ordinal) && InstanceEntries.TryDecode(k, bytes, out var problem) is null)
            {
                CliOutput.Note($"warning: routers will skip '{k}': not a valid instance record ({problem})");
            }

            await using var connection = StoreConnection.Open(options, ctx.LoggerFactory, createIfMissing: true);
            await connection.Store.PutAsync(k, bytes, 0, token).ConfigureAwait(false);
            if (options.Store == StoreKind.File)
            {
                // The file store keeps a key only while its writer refreshes it; rmctl exits now, so the key lives one TTL.
                connection.KeepOwnedKeys();
                CliOutput.Note($"note: the file store keeps a key only while its writer refreshes it: '{k}' expires in {options.File.Ttl.TotalSeconds:0.#} s (DYN_LEASE_TTL_SECS)");
            }

            Report(ctx, "put", k, connection.Description, true);
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command Remove(GlobalOptions global)
    {
        var key = KeyArgument();
        var yes = YesOption();
        var command = new Command("rm", "Delete a key; needs --yes") { key, yes };
        command.SetAction((parse, ct) => CommandContext.RunAsync(parse, global, ct, async (ctx, token) =>
        {
            var k = ValidKey(parse.GetValue(key)!);
            var options = ctx.StoreOptions();
            RequireYes(parse.GetValue(yes), "rm", k, options);
            await using var connection = StoreConnection.Open(options, ctx.LoggerFactory);
            var existed = await connection.Store.DeleteAsync(k, token).ConfigureAwait(false);
            if (!existed)
            {
                throw new CliFailureException($"key '{k}' not found in {connection.Description}; nothing deleted");
            }

            if (options.Store == StoreKind.File && k.StartsWith(InstanceKeys.Bucket + "/", StringComparison.Ordinal))
            {
                CliOutput.Note("note: on the file store a live process writes its own keys back within a few seconds; stop the process to remove its instance for good");
            }

            Report(ctx, "rm", k, connection.Description, true);
            return ExitCodes.Ok;
        }));
        return command;
    }

    private static Command List(GlobalOptions global)
    {
        var prefix = new Argument<string?>("PREFIX") { Description = "Key prefix (default: every key)", Arity = ArgumentArity.ZeroOrOne };
        var command = new Command("ls", "List keys under a prefix with their size and lease") { prefix };
        command.SetAction((parse, ct) => CommandContext.RunAsync(parse, global, ct, async (ctx, token) =>
        {
            var p = parse.GetValue(prefix) ?? string.Empty;
            if (p.StartsWith('/') || p.Contains("//", StringComparison.Ordinal))
            {
                throw new UsageException($"prefix '{p}' must not start with '/' or contain an empty segment");
            }

            await using var connection = ctx.OpenStore();
            var entries = await connection.Store.ListAsync(p, token).ConfigureAwait(false);
            if (ctx.Output.Json)
            {
                var list = new JsonArray();
                foreach (var e in entries)
                {
                    list.Add(EntryJson(connection, e, withValue: false));
                }

                ctx.Output.WriteJson(new JsonObject { ["store"] = connection.Description, ["prefix"] = p, ["keys"] = list });
                return ExitCodes.Ok;
            }

            if (entries.Count == 0)
            {
                ctx.Output.MarkupLine($"No keys{(p.Length == 0 ? string.Empty : $" under {CliOutput.Esc(p)}")} in {CliOutput.Esc(connection.Description)}.");
                return ExitCodes.Ok;
            }

            var table = new Table().Border(TableBorder.Simple).AddColumn("KEY").AddColumn(new TableColumn("BYTES").RightAligned()).AddColumn("LEASE").AddColumn(new TableColumn("REVISION").RightAligned());
            foreach (var e in entries)
            {
                table.AddRow(
                    CliOutput.Esc(e.Key),
                    e.Value.Length.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    e.LeaseId == 0 ? "-" : CliOutput.Lease(e.LeaseId),
                    e.ModRevision == 0 ? "-" : e.ModRevision.ToString(System.Globalization.CultureInfo.InvariantCulture));
            }

            ctx.Output.Console.Write(table);
            ctx.Output.MarkupLine($"[grey]{entries.Count} key(s) in {CliOutput.Esc(connection.Description)}[/]");
            return ExitCodes.Ok;
        }));
        return command;
    }

    /// <summary>The stores' own rule (a key is '/'-separated segments, none empty), checked before anything is opened.</summary>
    private static string ValidKey(string key)
    {
        if (string.IsNullOrEmpty(key) || key.StartsWith('/') || key.EndsWith('/') || key.Contains("//", StringComparison.Ordinal))
        {
            throw new UsageException($"key '{key}' is not valid: keys are '/'-separated segments and must not start or end with '/' or contain an empty segment");
        }

        return key;
    }

    private static void RequireYes(bool yes, string verb, string key, DiscoveryOptions options)
    {
        if (!yes)
        {
            throw new UsageException($"'rmctl store {verb} {key}' changes {StoreConnection.Describe(options)}, which every router and server reads; add --yes to confirm");
        }
    }

    private static void Report(CommandContext ctx, string verb, string key, string store, bool done)
    {
        if (ctx.Output.Json)
        {
            ctx.Output.WriteJson(new JsonObject { ["operation"] = verb, ["key"] = key, ["store"] = store, ["ok"] = done });
            return;
        }

        ctx.Output.MarkupLine($"{(verb == "rm" ? "deleted" : "written")}: {CliOutput.Esc(key)} ({CliOutput.Esc(store)})");
    }

    private static JsonObject EntryJson(StoreConnection connection, KeyValueEntry entry, bool withValue = true)
    {
        var json = new JsonObject
        {
            ["key"] = entry.Key,
            ["bytes"] = entry.Value.Length,
            ["lease"] = entry.LeaseId == 0 ? null : CliOutput.Lease(entry.LeaseId),
            ["mod_revision"] = entry.ModRevision == 0 ? null : entry.ModRevision,
        };
        var location = connection.Store.DescribeLocation(entry.Key);
        if (location != entry.Key)
        {
            json["location"] = location;
        }

        if (withValue)
        {
            var text = AsText(entry.Value);
            json["value"] = text;
            json["value_base64"] = text is null ? Convert.ToBase64String(entry.Value.Span) : null;
        }

        return json;
    }

    private static string? AsText(ReadOnlyMemory<byte> value)
    {
        try
        {
            return StrictUtf8.GetString(value.Span);
        }
        catch (DecoderFallbackException)
        {
            return null;
        }
    }

    private static async Task<byte[]> ReadStdinAsync(CancellationToken ct)
    {
        using var stdin = Console.OpenStandardInput();
        using var buffer = new MemoryStream();
        await stdin.CopyToAsync(buffer, ct).ConfigureAwait(false);
        return buffer.ToArray();
    }
}
