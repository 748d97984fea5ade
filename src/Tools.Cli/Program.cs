using System.CommandLine;
using System.CommandLine.Invocation;
using RequestMigration.Tools.Cli;
using RequestMigration.Tools.Cli.Commands;

// rmctl: the operator CLI. Exit codes: 0 ok, 1 failure, 2 usage, 130 a call stopped by Ctrl+C.
var global = new GlobalOptions();
var root = new RootCommand("rmctl: see what discovery holds, watch membership, send a request, read and write the store");
foreach (var option in global.All)
{
    root.Options.Add(option);
}

root.Subcommands.Add(InstancesCommand.Create(global));
root.Subcommands.Add(WatchCommand.Create(global));
root.Subcommands.Add(CallCommand.Create(global));
root.Subcommands.Add(StoreCommand.Create(global));

var parse = root.Parse(args);
if (parse.Action is ParseErrorAction)
{
    // System.CommandLine exits with 1 on a parse error; usage errors are 2 here, as the README says.
    foreach (var error in parse.Errors)
    {
        Console.Error.WriteLine($"error: {error.Message}");
    }

    Console.Error.WriteLine(UsageHint(parse));
    return ExitCodes.Usage;
}

return await parse.InvokeAsync(new InvocationConfiguration
{
    // Ctrl+C or SIGTERM cancels the command's token; watch and call then end on their own within this time.
    ProcessTerminationTimeout = TimeSpan.FromSeconds(5),
}).ConfigureAwait(false);

static string UsageHint(ParseResult parse)
{
    var names = new List<string>();
    for (var r = parse.CommandResult; r is not null; r = r.Parent as System.CommandLine.Parsing.CommandResult)
    {
        if (r.Command is not RootCommand)
        {
            names.Insert(0, r.Command.Name);
        }
    }

    return $"Run 'rmctl {string.Join(' ', names.Append("--help"))}' for usage.";
}
