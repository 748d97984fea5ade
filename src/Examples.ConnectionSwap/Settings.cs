using System.Globalization;
using System.Net;

namespace Examples.ConnectionSwap;

/// <summary>A setting the user must fix: the message is the one line printed before exiting with code 2.</summary>
internal sealed class ConfigurationException(string message) : Exception(message);

/// <summary><c>host:port</c> as given in a <c>CONNECTION_SWAP_*_ADDR</c> variable.</summary>
/// <param name="Host">An IP address for addresses we listen on; an IP address or a host name for targets.</param>
/// <param name="Port">0..65535 for listening (0 = a free port), 1..65535 for targets.</param>
internal readonly record struct HostPort(string Host, int Port)
{
    public override string ToString() => Host.Contains(':', StringComparison.Ordinal) ? $"[{Host}]:{Port}" : $"{Host}:{Port}";
}

/// <summary>The client's modes (<c>CONNECTION_SWAP_CLIENT_MODE</c>).</summary>
internal enum ClientMode
{
    /// <summary>One stream to a director, which continues it on the next worker; the client never reconnects.</summary>
    Director,

    /// <summary>The client asks a director for a worker and streams from it itself, with heartbeats.</summary>
    Direct,
}

/// <summary>
/// The example's settings, read from <c>CONNECTION_SWAP_*</c> variables (names and defaults from the original
/// example) and checked before anything starts, so a mistake is one line naming the variable and the
/// expected form.
/// </summary>
internal sealed class Settings
{
    public const string DirectorUserAddr = "CONNECTION_SWAP_DIRECTOR_USER_ADDR";
    public const string DirectorMgmtAddr = "CONNECTION_SWAP_DIRECTOR_MGMT_ADDR";
    public const string DirectorLabel = "CONNECTION_SWAP_DIRECTOR_LABEL";
    public const string DirectorTarget = "CONNECTION_SWAP_DIRECTOR_TARGET";
    public const string WorkerUserAddr = "CONNECTION_SWAP_WORKER_USER_ADDR";
    public const string WorkerMgmtAddr = "CONNECTION_SWAP_WORKER_MGMT_ADDR";
    public const string WorkerLabel = "CONNECTION_SWAP_WORKER_LABEL";
    public const string WorkerHeartbeatSecs = "CONNECTION_SWAP_WORKER_HEARTBEAT_SECS";
    public const string FailureEnabled = "CONNECTION_SWAP_FAILURE_ENABLED";
    public const string FailureMinSecs = "CONNECTION_SWAP_FAILURE_MIN_SECS";
    public const string FailureMaxSecs = "CONNECTION_SWAP_FAILURE_MAX_SECS";
    public const string RecoverySecs = "CONNECTION_SWAP_RECOVERY_SECS";
    public const string TokenIntervalMs = "CONNECTION_SWAP_TOKEN_INTERVAL_MS";
    public const string ClientMode = "CONNECTION_SWAP_CLIENT_MODE";
    public const string ClientTokens = "CONNECTION_SWAP_CLIENT_TOKENS";
    public const string ClientMaxWaitSecs = "CONNECTION_SWAP_CLIENT_MAX_WAIT_SECS";
    public const string LogLevel = "CONNECTION_SWAP_LOG_LEVEL";

    private const string ListenForm = "host:port with an IP address and a port 0-65535 (0 picks a free port), e.g.";
    private const string TargetForm = "host:port with a port 1-65535, several separated by commas, e.g. 127.0.0.1:61001";

    private readonly Func<string, string?> _env;

    public Settings(Func<string, string?>? environment = null) => _env = environment ?? Environment.GetEnvironmentVariable;

    // Director (and the address workers register with).
    public HostPort DirectorUser => Listen(DirectorUserAddr, "127.0.0.1:61000");

    public HostPort DirectorMgmt => Listen(DirectorMgmtAddr, "127.0.0.1:61001");

    public string DirectorName => Label(DirectorLabel, "director");

    /// <summary>The director MGMT addresses a worker registers with: every director, so none is a single point of failure.</summary>
    public IReadOnlyList<HostPort> DirectorMgmtTargets => Targets(DirectorMgmtAddr, "127.0.0.1:61001")!;

    /// <summary>The directors' USER addresses as the client sees them; null (unset) means "the directors registered in the discovery store".</summary>
    public IReadOnlyList<HostPort>? DirectorTargets => Targets(DirectorTarget, null);

    // Worker.
    public HostPort WorkerUser => Listen(WorkerUserAddr, "127.0.0.1:62001");

    public HostPort WorkerMgmt => Listen(WorkerMgmtAddr, "127.0.0.1:63001");

    public string WorkerName => Label(WorkerLabel, "worker");

    public TimeSpan WorkerHeartbeat => Seconds(WorkerHeartbeatSecs, 5, 0.1, 3600);

    public bool FailureSimulation => Bool(FailureEnabled, true);

    public TimeSpan FailureMin => Seconds(FailureMinSecs, 10, 0.1, 86_400);

    public TimeSpan FailureMax => Seconds(FailureMaxSecs, 25, 0.1, 86_400);

    public TimeSpan Recovery => Seconds(RecoverySecs, 10, 0, 86_400);

    public TimeSpan TokenInterval => TimeSpan.FromMilliseconds(Int(TokenIntervalMs, 500, 1, 60_000));

    // Client.
    public ClientMode Mode => (_env(ClientMode) ?? string.Empty).Trim().ToLowerInvariant() switch
    {
        "" or "director" => Examples.ConnectionSwap.ClientMode.Director,
        "direct" => Examples.ConnectionSwap.ClientMode.Direct,
        var other => throw new ConfigurationException($"{ClientMode}='{other}' is not a client mode; expected director (default) or direct"),
    };

    /// <summary>Tokens the client asks for before it ends the session (0: until stopped).</summary>
    public long Tokens => Int(ClientTokens, 0, 0, int.MaxValue);

    /// <summary>How long the client keeps waiting without getting a token before it gives up.</summary>
    public TimeSpan ClientMaxWait => Seconds(ClientMaxWaitSecs, 120, 1, 86_400);

    public Serilog.Events.LogEventLevel Level =>
        _env(LogLevel) is not { Length: > 0 } l ? Serilog.Events.LogEventLevel.Information
        : Enum.TryParse<Serilog.Events.LogEventLevel>(l.Trim(), ignoreCase: true, out var level) && Enum.IsDefined(level) ? level
        : throw new ConfigurationException($"{LogLevel}='{l}' is not a log level; expected Verbose, Debug, Information, Warning or Error");

    /// <summary>Reads every setting a role uses, so the first bad one is reported before anything starts.</summary>
    public void Validate(string role)
    {
        switch (role)
        {
            case "director":
                _ = (DirectorUser, DirectorMgmt, DirectorName);
                break;
            case "worker":
                _ = (WorkerUser, WorkerMgmt, WorkerName, DirectorMgmtTargets, WorkerHeartbeat, FailureSimulation, Recovery, TokenInterval);
                if (FailureMin > FailureMax)
                {
                    throw new ConfigurationException($"{FailureMinSecs}={FailureMin.TotalSeconds:0.###} is greater than {FailureMaxSecs}={FailureMax.TotalSeconds:0.###}; expected MIN <= MAX (seconds)");
                }

                break;
            case "client":
                _ = (Mode, DirectorTargets, Tokens, ClientMaxWait);
                break;
        }

        _ = Level;
    }

    private HostPort Listen(string name, string fallback)
    {
        var text = _env(name) is { Length: > 0 } v ? v.Trim() : fallback;
        if (!TryParse(text, out var hp, listen: true))
        {
            throw new ConfigurationException($"{name}='{text}' is not an address to listen on; expected {ListenForm} {fallback}");
        }

        return hp;
    }

    private IReadOnlyList<HostPort>? Targets(string name, string? fallback)
    {
        var text = _env(name) is { Length: > 0 } v ? v.Trim() : fallback;
        if (text is null)
        {
            return null;
        }

        var list = new List<HostPort>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries))
        {
            if (!TryParse(part, out var hp, listen: false))
            {
                throw new ConfigurationException($"{name}='{text}': '{part}' is not an address; expected {TargetForm}");
            }

            list.Add(hp);
        }

        return list;
    }

    private static bool TryParse(string text, out HostPort result, bool listen)
    {
        result = default;
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > 65535 || (!listen && port == 0))
        {
            return false;
        }

        var host = text[..colon];
        if (host.StartsWith('[') && host.EndsWith(']'))
        {
            host = host[1..^1];
        }
        else if (host.Contains(':', StringComparison.Ordinal))
        {
            // An IPv6 address needs brackets, or its last group would read as the port.
            return false;
        }

        var isIp = IPAddress.TryParse(host, out _);
        if (listen ? !isIp : !isIp && Uri.CheckHostName(host) != UriHostNameType.Dns)
        {
            return false;
        }

        result = new HostPort(host, port);
        return true;
    }

    private string Label(string name, string fallback)
    {
        var text = _env(name) is { Length: > 0 } v ? v.Trim() : fallback;
        if (text.Length is 0 or > 63 || !text.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
        {
            throw new ConfigurationException($"{name}='{text}' is not a label; expected 1-63 letters, digits, '-', '_' or '.', e.g. worker-a");
        }

        return text;
    }

    private bool Bool(string name, bool fallback) => (_env(name) ?? string.Empty).Trim().ToLowerInvariant() switch
    {
        "" => fallback,
        "1" or "true" or "yes" or "on" => true,
        "0" or "false" or "no" or "off" => false,
        var other => throw new ConfigurationException($"{name}='{other}' is not a boolean; expected true or false"),
    };

    private int Int(string name, int fallback, int min, int max)
    {
        if (_env(name) is not { Length: > 0 } text)
        {
            return fallback;
        }

        return int.TryParse(text.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max
            ? n
            : throw new ConfigurationException($"{name}='{text}' is not valid; expected a whole number from {min} to {max}");
    }

    private TimeSpan Seconds(string name, double fallback, double min, double max)
    {
        if (_env(name) is not { Length: > 0 } text)
        {
            return TimeSpan.FromSeconds(fallback);
        }

        return double.TryParse(text.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var s) && s >= min && s <= max
            ? TimeSpan.FromSeconds(s)
            : throw new ConfigurationException($"{name}='{text}' is not valid; expected a number of seconds from {min.ToString(CultureInfo.InvariantCulture)} to {max.ToString(CultureInfo.InvariantCulture)}");
    }
}
