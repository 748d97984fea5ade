using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Tools.Cli.Output;

namespace RequestMigration.Tools.Cli.Commands;

/// <summary>
/// Prints a call as it happens. The router reports each attempt's start and end (<see cref="IAttemptObserver"/>) on
/// the consumer's enumeration, in order, so every item between a start and its end came from that attempt's instance.
/// </summary>
internal sealed class CallPrinter(CliOutput output, bool migration) : IAttemptObserver
{
    private readonly HashSet<ulong> _instances = [];
    private InstanceRecord? _current;
    private int _attempt;
    private int _attempts;
    private int _failovers;
    private long _items;
    private Failure? _lastFailure;

    // The router follows a failed attempt with an error item carrying the same message (without migration);
    // the attempt's end already said it.
    private string? _echoExpected;

    public void OnAttemptStarted(InstanceRecord instance, int attempt, long resumeFrom)
    {
        _current = instance;
        _attempt = attempt;
        _attempts++;
        _instances.Add(instance.InstanceId);
        _echoExpected = null;
        var failover = _lastFailure;
        _lastFailure = null;
        if (failover is not null)
        {
            _failovers++;
        }

        if (output.Json)
        {
            if (failover is not null)
            {
                output.WriteJson(new JsonObject
                {
                    ["event"] = "failover",
                    ["attempt"] = attempt,
                    ["from_instance_id"] = CliOutput.Id(failover.Instance.InstanceId),
                    ["from_address"] = failover.Instance.Address,
                    ["to_instance_id"] = CliOutput.Id(instance.InstanceId),
                    ["to_address"] = instance.Address,
                    ["error"] = failover.Error,
                    ["resume_from"] = resumeFrom,
                });
            }

            output.WriteJson(new JsonObject
            {
                ["event"] = "attempt",
                ["attempt"] = attempt,
                ["instance_id"] = CliOutput.Id(instance.InstanceId),
                ["address"] = instance.Address,
                ["transport"] = instance.Transport,
                ["resume_from"] = resumeFrom,
            });
            return;
        }

        var resuming = resumeFrom > 0 ? $", resuming after {resumeFrom} item(s)" : string.Empty;
        var head = failover is null ? string.Empty : "[yellow]failover[/] -> ";
        output.MarkupLine($"{head}[bold]attempt {attempt}[/]: instance [cyan]{CliOutput.Id(instance.InstanceId)}[/] at {CliOutput.Esc(instance.Address)} ({CliOutput.Esc(instance.Transport)}){resuming}");
    }

    public void OnAttemptEnded(InstanceRecord instance, int attempt, long items, string? error)
    {
        _current = null;
        if (error is null)
        {
            return;
        }

        _lastFailure = new Failure(instance, attempt, items, error);
        _echoExpected = migration ? null : error;
        if (output.Json)
        {
            output.WriteJson(new JsonObject
            {
                ["event"] = "attempt_failed",
                ["attempt"] = attempt,
                ["instance_id"] = CliOutput.Id(instance.InstanceId),
                ["address"] = instance.Address,
                ["items"] = items,
                ["error"] = error,
            });
            return;
        }

        output.MarkupLine($"[red]attempt {attempt} failed[/] on instance [cyan]{CliOutput.Id(instance.InstanceId)}[/] after {items} item(s): {CliOutput.Esc(error)}");
    }

    public void OnItem(JsonElement data)
    {
        _items++;
        var instance = _current;
        if (output.Json)
        {
            output.WriteJson(new JsonObject
            {
                ["event"] = "item",
                ["attempt"] = _attempt,
                ["instance_id"] = instance is null ? null : CliOutput.Id(instance.InstanceId),
                ["address"] = instance?.Address,
                ["data"] = JsonNode.Parse(data.GetRawText()),
            });
            return;
        }

        var text = data.ValueKind == JsonValueKind.String ? data.GetString() : data.GetRawText();
        output.MarkupLine($"  [cyan]{(instance is null ? "?" : CliOutput.Id(instance.InstanceId))}[/]  {CliOutput.Esc(text)}");
    }

    /// <summary>An error item the router yielded: the echo of a failed attempt, or a retry that found no instance.</summary>
    public void OnErrorItem(string message)
    {
        if (_echoExpected == message)
        {
            _echoExpected = null;
            return;
        }

        if (output.Json)
        {
            output.WriteJson(new JsonObject { ["event"] = "error", ["message"] = message });
            return;
        }

        output.MarkupLine($"[red]error[/]: {CliOutput.Esc(message)}");
    }

    public void OnCompleted() => End("completed", null);

    public void OnFailed(string error) => End("failed", error);

    public void OnInterrupted() => End("interrupted", "stopped by Ctrl+C");

    private void End(string outcome, string? error)
    {
        if (output.Json)
        {
            var ids = new JsonArray();
            foreach (var id in _instances)
            {
                ids.Add(CliOutput.Id(id));
            }

            output.WriteJson(new JsonObject
            {
                ["event"] = outcome,
                ["items"] = _items,
                ["attempts"] = _attempts,
                ["failovers"] = _failovers,
                ["instances"] = ids,
                ["error"] = error,
            });
            return;
        }

        var summary = string.Create(CultureInfo.InvariantCulture, $"{_items} item(s) from {_instances.Count} instance(s) in {_attempts} attempt(s), {_failovers} failover(s)");
        if (error is null)
        {
            output.MarkupLine($"[green]{outcome}[/]: {summary}");
        }
        else
        {
            output.MarkupLine($"[red]{outcome}[/]: {CliOutput.Esc(error)} ({summary})");
        }
    }

    private sealed record Failure(InstanceRecord Instance, int Attempt, long Items, string Error);
}
