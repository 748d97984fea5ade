using System.Net;
using System.Net.Sockets;
using RequestMigration.Tests.EndToEnd;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.ConnectionSwap;

/// <summary>Bad settings and an unreachable director: one clear line (exit code 2) or a clear, retrying client; never a stack trace.</summary>
[Collection(EndToEndCollection.Name)]
public sealed class ConnectionSwapBadInputTests : IAsyncLifetime
{
    private readonly SwapCluster _cluster = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _cluster.DisposeAsync();

    [Theory]
    [InlineData("worker", "CONNECTION_SWAP_WORKER_USER_ADDR", "nonsense", "CONNECTION_SWAP_WORKER_USER_ADDR='nonsense' is not an address to listen on; expected host:port with an IP address and a port 0-65535")]
    [InlineData("worker", "CONNECTION_SWAP_WORKER_MGMT_ADDR", "127.0.0.1:70000", "CONNECTION_SWAP_WORKER_MGMT_ADDR='127.0.0.1:70000' is not an address to listen on; expected host:port")]
    [InlineData("director", "CONNECTION_SWAP_DIRECTOR_USER_ADDR", "127.0.0.1", "CONNECTION_SWAP_DIRECTOR_USER_ADDR='127.0.0.1' is not an address to listen on; expected host:port")]
    [InlineData("worker", "CONNECTION_SWAP_DIRECTOR_MGMT_ADDR", "127.0.0.1:61001,oops", "CONNECTION_SWAP_DIRECTOR_MGMT_ADDR='127.0.0.1:61001,oops': 'oops' is not an address; expected host:port")]
    [InlineData("client", "CONNECTION_SWAP_DIRECTOR_TARGET", "127.0.0.1:99999", "CONNECTION_SWAP_DIRECTOR_TARGET='127.0.0.1:99999': '127.0.0.1:99999' is not an address; expected host:port with a port 1-65535")]
    [InlineData("worker", "CONNECTION_SWAP_FAILURE_MIN_SECS", "30", "CONNECTION_SWAP_FAILURE_MIN_SECS=30 is greater than CONNECTION_SWAP_FAILURE_MAX_SECS=25; expected MIN <= MAX")]
    [InlineData("worker", "CONNECTION_SWAP_TOKEN_INTERVAL_MS", "fast", "CONNECTION_SWAP_TOKEN_INTERVAL_MS='fast' is not valid; expected a whole number from 1 to 60000")]
    [InlineData("client", "CONNECTION_SWAP_CLIENT_MODE", "sideways", "CONNECTION_SWAP_CLIENT_MODE='sideways' is not a client mode; expected director (default) or direct")]
    [InlineData("boss", "CONNECTION_SWAP_WORKER_LABEL", "x", "unknown role 'boss'; expected one role: director, worker or client")]
    public async Task A_bad_setting_is_one_line_naming_the_variable_and_the_expected_form(string role, string variable, string value, string expected)
    {
        var p = _cluster.Launch(role, role, new Dictionary<string, string> { [variable] = value });
        (await p.WaitForExitAsync(TimeSpan.FromSeconds(30))).ShouldBe(2, p.Describe());
        p.Stderr.Trim().ShouldStartWith("error: " + expected, Case.Sensitive, p.Describe());
        p.Stderr.Trim().Split('\n').Length.ShouldBe(1, p.Describe());
        p.Stdout.ShouldNotContain("   at ", Case.Sensitive, "no stack trace");
    }

    [Theory]
    [InlineData("director", "CONNECTION_SWAP_DIRECTOR_USER_ADDR")]
    [InlineData("director", "CONNECTION_SWAP_DIRECTOR_MGMT_ADDR")]
    [InlineData("worker", "CONNECTION_SWAP_WORKER_USER_ADDR")]
    [InlineData("worker", "CONNECTION_SWAP_WORKER_MGMT_ADDR")]
    public async Task A_port_in_use_names_the_port_and_the_variable_to_change(string role, string variable)
    {
        using var taken = new TcpListener(IPAddress.Loopback, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port;
        var env = new Dictionary<string, string>
        {
            ["CONNECTION_SWAP_DIRECTOR_USER_ADDR"] = "127.0.0.1:0",
            ["CONNECTION_SWAP_DIRECTOR_MGMT_ADDR"] = role == "worker" ? "127.0.0.1:1" : "127.0.0.1:0",
            ["CONNECTION_SWAP_WORKER_USER_ADDR"] = "127.0.0.1:0",
            ["CONNECTION_SWAP_WORKER_MGMT_ADDR"] = "127.0.0.1:0",
        };
        env[variable] = $"127.0.0.1:{port}";
        var p = _cluster.Launch(role, role, env);
        (await p.WaitForExitAsync(TimeSpan.FromSeconds(30))).ShouldBe(2, p.Describe());
        p.Stderr.Trim().ShouldBe($"error: cannot listen on 127.0.0.1:{port}: port {port} is already in use; stop what uses it or set {variable} to another address (port 0 picks a free one)", p.Describe());
        p.Stdout.ShouldNotContain("   at ", Case.Sensitive, "no stack trace");
    }

    [Fact]
    public async Task A_client_with_no_director_says_so_within_seconds_and_keeps_retrying_with_backoff()
    {
        // One client is given an address nobody listens on; the other looks directors up in an empty store.
        using var free = new TcpListener(IPAddress.Loopback, 0);
        free.Start();
        var port = ((IPEndPoint)free.LocalEndpoint).Port;
        free.Stop();
        var byAddress = _cluster.LaunchClient("director", 10, new Dictionary<string, string> { ["CONNECTION_SWAP_DIRECTOR_TARGET"] = $"127.0.0.1:{port}" });
        var byStore = _cluster.LaunchClient("direct", 10);

        var started = DateTime.UtcNow;
        var first = await byAddress.WaitForLineAsync("no director reachable", TimeSpan.FromSeconds(5));
        first.ShouldContain($"cannot reach instance");
        first.ShouldContain($"127.0.0.1:{port}");
        (await byStore.WaitForLineAsync("no director reachable", TimeSpan.FromSeconds(5))).ShouldContain("no director found: directors are looked up in the file discovery store");
        (DateTime.UtcNow - started).ShouldBeLessThan(TimeSpan.FromSeconds(5));

        // Still running, still trying, each wait longer than the last.
        foreach (var client in new[] { byAddress, byStore })
        {
            await WaitForCountAsync(client, "no director reachable", 3);
            client.HasExited.ShouldBeFalse(client.Describe());
            var delays = client.StdoutLines.Where(l => l.Contains("no director reachable", StringComparison.Ordinal))
                .Select(l => double.Parse(l[(l.LastIndexOf("retrying in ", StringComparison.Ordinal) + 12)..].Split(' ')[0], System.Globalization.CultureInfo.InvariantCulture)).ToList();
            delays[2].ShouldBeGreaterThan(delays[0], client.Describe());
            (client.Stdout + client.Stderr).ShouldNotContain("   at ", Case.Sensitive, "no stack trace");
        }
    }

    private static async Task WaitForCountAsync(ChildProcess p, string text, int count)
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (p.StdoutLines.Count(l => l.Contains(text, StringComparison.Ordinal)) < count)
        {
            DateTime.UtcNow.ShouldBeLessThan(deadline, p.Describe());
            await Task.Delay(50);
        }
    }
}
