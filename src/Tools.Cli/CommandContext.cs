using System.CommandLine;
using Microsoft.Extensions.Logging;
using RequestMigration.Discovery;
using RequestMigration.Tools.Cli.Output;

namespace RequestMigration.Tools.Cli;

/// <summary>The options every command takes (<c>Recursive</c>, so they go before or after the command name).</summary>
internal sealed class GlobalOptions
{
    public Option<bool> Json { get; } = new("--json")
    {
        Description = "Write JSON to stdout for scripts: one document, or one object per line for watch and call",
        Recursive = true,
    };

    public Option<string?> Store { get; } = new("--store")
    {
        Description = "Discovery store: file or etcd (default: DYN_STORE_KV, else file)",
        HelpName = "file|etcd",
        Recursive = true,
    };

    public Option<string?> FileDir { get; } = new("--file-dir")
    {
        Description = "Directory of the file store (default: DYN_FILE_KV, else $TMPDIR/dynamo_store_kv); implies --store file",
        HelpName = "DIR",
        Recursive = true,
    };

    public Option<string?> EtcdEndpoints { get; } = new("--etcd-endpoints")
    {
        Description = "Comma-separated etcd endpoints (default: ETCD_ENDPOINTS, else http://127.0.0.1:2379); implies --store etcd",
        HelpName = "URLS",
        Recursive = true,
    };

    public Option<bool> Verbose { get; } = new("--verbose", "-v")
    {
        Description = "Also log the runtime's and the store's information and debug messages (to stderr)",
        Recursive = true,
    };

    public IEnumerable<Option> All => [Json, Store, FileDir, EtcdEndpoints, Verbose];
}

/// <summary>What one invocation runs with: output, store settings, logging.</summary>
internal sealed class CommandContext : IDisposable
{
    private CommandContext(CliOutput output, StoreFlags flags, bool verbose)
    {
        Output = output;
        Flags = flags;
        Verbose = verbose;
        LoggerFactory = Microsoft.Extensions.Logging.LoggerFactory.Create(b => b
            .SetMinimumLevel(verbose ? LogLevel.Debug : LogLevel.Warning)
            .AddProvider(new StderrLoggerProvider(verbose)));
    }

    public CliOutput Output { get; }

    public StoreFlags Flags { get; }

    public bool Verbose { get; }

    public ILoggerFactory LoggerFactory { get; }

    /// <summary>Store settings from the environment and the flags.</summary>
    public DiscoveryOptions StoreOptions() => StoreConnection.ResolveOptions(Flags);

    /// <summary>Opens the store (see <see cref="StoreConnection.Open"/>).</summary>
    public StoreConnection OpenStore(bool createIfMissing = false) => StoreConnection.Open(StoreOptions(), LoggerFactory, createIfMissing);

    public void Dispose() => LoggerFactory.Dispose();

    /// <summary>
    /// Runs a command body and turns its errors into one line on stderr and the documented exit code; no stack
    /// traces (<c>--verbose</c> adds the exception's type and inner messages).
    /// </summary>
    public static async Task<int> RunAsync(ParseResult parse, GlobalOptions global, CancellationToken cancellationToken, Func<CommandContext, CancellationToken, Task<int>> body)
    {
        using var context = new CommandContext(
            new CliOutput(parse.GetValue(global.Json)),
            new StoreFlags(parse.GetValue(global.Store), parse.GetValue(global.FileDir), parse.GetValue(global.EtcdEndpoints)),
            parse.GetValue(global.Verbose));
        try
        {
            return await body(context, cancellationToken).ConfigureAwait(false);
        }
        catch (UsageException ex)
        {
            await Console.Error.WriteLineAsync($"error: {ex.Message}").ConfigureAwait(false);
            return ExitCodes.Usage;
        }
        catch (CliFailureException ex)
        {
            Report(ex, context.Verbose);
            return ExitCodes.Failure;
        }
        catch (StoreUnavailableException ex)
        {
            // The store's message already names it and where ("etcd at http://... is unavailable: ...").
            Report(ex, context.Verbose);
            await Console.Error.WriteLineAsync(ex.Message.StartsWith("etcd", StringComparison.Ordinal)
                ? "hint: start etcd there, or point ETCD_ENDPOINTS or --etcd-endpoints at a running one"
                : "hint: check DYN_FILE_KV or --file-dir, and that this user can read and write there").ConfigureAwait(false);
            return ExitCodes.Failure;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Ctrl+C before the command reached a point where stopping is its normal end.
            await Console.Error.WriteLineAsync("interrupted").ConfigureAwait(false);
            return ExitCodes.Interrupted;
        }
    }

    private static void Report(Exception ex, bool verbose)
    {
        Console.Error.WriteLine($"error: {ex.Message}");
        if (verbose)
        {
            for (var e = ex.InnerException; e is not null; e = e.InnerException)
            {
                Console.Error.WriteLine($"  caused by {e.GetType().Name}: {e.Message}");
            }
        }
    }
}
