using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using RequestMigration.Discovery.Instances;
using RequestMigration.Tools.Cli.Membership;
using RequestMigration.Tools.Cli.Output;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace RequestMigration.Tools.Cli.Commands;

/// <summary><c>rmctl watch [ENDPOINT-PREFIX]</c>: live membership events until Ctrl+C.</summary>
internal static class WatchCommand
{
    private const int LiveEventLines = 12;

    public static Command Create(GlobalOptions global)
    {
        var prefix = new Argument<string?>("ENDPOINT-PREFIX")
        {
            Description = "namespace, namespace/component or namespace/component/endpoint (default: every endpoint)",
            Arity = ArgumentArity.ZeroOrOne,
        };
        var live = new Option<bool>("--live")
        {
            Description = "Show a live table of the current instances with the latest events below it (needs a terminal)",
        };
        var command = new Command("watch", "Stream membership events: present, joined, updated, left (deregistered) and expired (lease ran out), until Ctrl+C")
        {
            prefix,
            live,
        };
        command.SetAction((parse, ct) => CommandContext.RunAsync(parse, global, ct, (ctx, token) => RunAsync(ctx, parse.GetValue(prefix), parse.GetValue(live), token)));
        return command;
    }

    private static async Task<int> RunAsync(CommandContext ctx, string? prefix, bool live, CancellationToken ct)
    {
        var endpointPrefix = InstanceEntries.Normalize(prefix);
        if (live && ctx.Output.Json)
        {
            throw new UsageException("--live and --json don't go together: --json already streams one event per line");
        }

        if (live && !CliOutput.IsTerminal)
        {
            throw new UsageException("--live needs a terminal; without it watch prints one line per event");
        }

        await using var connection = ctx.OpenStore();
        var events = MembershipWatch.RunAsync(connection, endpointPrefix, ct);
        try
        {
            if (live)
            {
                await RunLiveAsync(ctx, connection, events, ct).ConfigureAwait(false);
            }
            else
            {
                await foreach (var e in events.ConfigureAwait(false))
                {
                    Print(ctx, connection, endpointPrefix, e);
                }
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // Ctrl+C is how a watch ends.
        }

        return ExitCodes.Ok;
    }

    private static void Print(CommandContext ctx, StoreConnection connection, string endpointPrefix, MemberEvent e)
    {
        if (ctx.Output.Json)
        {
            ctx.Output.WriteJson(ToJson(e));
            return;
        }

        if (e.Kind == MemberEventKind.Synced)
        {
            // For the person watching, not for a pipe: stderr.
            CliOutput.Note($"-- watching {(endpointPrefix.Length == 0 ? "every endpoint" : endpointPrefix)} in {connection.Description} (Ctrl+C to stop)");
            return;
        }

        var r = e.Instance!;
        var detail = e.Kind switch
        {
            MemberEventKind.Left or MemberEventKind.Expired => e.Verdict!.Reason,
            _ => $"{CliOutput.Transport(r)}{(r.Tags.Count == 0 ? string.Empty : "  " + InstanceTags.Format(r.Tags))}",
        };
        ctx.Output.MarkupLine(
            $"{e.Time.ToLocalTime():HH:mm:ss.fff}  [{Colour(e.Kind)}]{Name(e.Kind),-8}[/]  {CliOutput.Esc(r.EndpointId.Path)}  {CliOutput.Esc(CliOutput.Id(r.InstanceId))}  {CliOutput.Esc(r.Address)}  {CliOutput.Esc(detail)}");
    }

    private static JsonObject ToJson(MemberEvent e)
    {
        var json = new JsonObject
        {
            ["event"] = Name(e.Kind),
            ["time"] = e.Time.ToString("O", CultureInfo.InvariantCulture),
        };
        if (e.Instance is { } r)
        {
            foreach (var (k, v) in CliOutput.InstanceJson(r, e.Time))
            {
                json[k] = v?.DeepClone();
            }
        }

        if (e.Verdict is { } v2)
        {
            json["reason"] = v2.Reason;
            json["lease"] = v2.LeaseId == 0 ? null : CliOutput.Lease(v2.LeaseId);
            json["last_renewed"] = v2.LastRenewed?.ToString("O", CultureInfo.InvariantCulture);
        }

        return json;
    }

    private static string Name(MemberEventKind kind) => kind.ToString().ToLowerInvariant();

    private static string Colour(MemberEventKind kind) => kind switch
    {
        MemberEventKind.Joined => "green",
        MemberEventKind.Updated => "blue",
        MemberEventKind.Left => "yellow",
        MemberEventKind.Expired => "red",
        _ => "grey",
    };

    /// <summary>
    /// A Spectre live view: the members as they are now, and the latest events. Events are pumped into a channel so
    /// the view can also re-render every second (ages keep moving) while no event arrives.
    /// </summary>
    private static async Task RunLiveAsync(CommandContext ctx, StoreConnection connection, IAsyncEnumerable<MemberEvent> events, CancellationToken ct)
    {
        var channel = Channel.CreateUnbounded<MemberEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var pump = Task.Run(
            async () =>
            {
                try
                {
                    await foreach (var e in events.ConfigureAwait(false))
                    {
                        channel.Writer.TryWrite(e);
                    }

                    channel.Writer.TryComplete();
                }
                catch (Exception ex)
                {
                    channel.Writer.TryComplete(ex);
                }
            },
            CancellationToken.None);

        var members = new SortedDictionary<(string, ulong), (InstanceRecord Record, DateTimeOffset Since)>();
        var recent = new Queue<MemberEvent>();
        await ctx.Output.Console.Live(Render(connection, members, recent)).AutoClear(false).StartAsync(async live =>
        {
            while (true)
            {
                using var tick = CancellationTokenSource.CreateLinkedTokenSource(ct);
                tick.CancelAfter(TimeSpan.FromSeconds(1));
                try
                {
                    if (!await channel.Reader.WaitToReadAsync(tick.Token).ConfigureAwait(false))
                    {
                        break;
                    }
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    // A tick: redraw so ages move.
                }

                while (channel.Reader.TryRead(out var e))
                {
                    Apply(members, recent, e);
                }

                live.UpdateTarget(Render(connection, members, recent));
                live.Refresh();
            }
        }).ConfigureAwait(false);
        await pump.ConfigureAwait(false);
        await channel.Reader.Completion.ConfigureAwait(false);
    }

    private static void Apply(SortedDictionary<(string, ulong), (InstanceRecord Record, DateTimeOffset Since)> members, Queue<MemberEvent> recent, MemberEvent e)
    {
        if (e.Instance is not { } r)
        {
            return;
        }

        var key = (r.EndpointId.Path, r.InstanceId);
        switch (e.Kind)
        {
            case MemberEventKind.Present or MemberEventKind.Joined:
                members[key] = (r, r.RegisteredAt ?? e.Time);
                break;
            case MemberEventKind.Updated:
                members[key] = (r, members.TryGetValue(key, out var m) ? m.Since : e.Time);
                break;
            case MemberEventKind.Left or MemberEventKind.Expired:
                members.Remove(key);
                break;
        }

        if (e.Kind != MemberEventKind.Present)
        {
            recent.Enqueue(e);
            while (recent.Count > LiveEventLines)
            {
                recent.Dequeue();
            }
        }
    }

    private static IRenderable Render(StoreConnection connection, SortedDictionary<(string, ulong), (InstanceRecord Record, DateTimeOffset Since)> members, Queue<MemberEvent> recent)
    {
        var now = DateTimeOffset.UtcNow;
        var table = CliOutput.WithInstanceColumns(new Table().Border(TableBorder.Rounded)
            .Title($"[bold]{CliOutput.Esc(connection.Description)}[/]: {members.Count} instance(s)"));
        foreach (var (r, since) in members.Values)
        {
            CliOutput.AddInstanceRow(table, r, CliOutput.Age(now - since));
        }

        var lines = recent.Select(e => e.Instance is { } r
            ? new Markup($"{e.Time.ToLocalTime():HH:mm:ss}  [{Colour(e.Kind)}]{Name(e.Kind),-8}[/]  {CliOutput.Esc(r.EndpointId.Path)}  {CliOutput.Esc(CliOutput.Id(r.InstanceId))}  {CliOutput.Esc(e.Verdict?.Reason ?? r.Address)}")
            : new Markup($"{e.Time.ToLocalTime():HH:mm:ss}  [grey]synced[/]"));
        return new Rows([table, new Markup("[grey]latest events (Ctrl+C to stop)[/]"), .. lines]);
    }
}
