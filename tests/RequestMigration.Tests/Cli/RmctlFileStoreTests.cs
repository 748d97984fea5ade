using System.Text.Json;
using System.Text.RegularExpressions;
using RequestMigration.Tests.EndToEnd;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Cli;

/// <summary>rmctl against the file store, beside real example servers (one test directory each).</summary>
[Collection(EndToEndCollection.Name)]
public sealed partial class RmctlFileStoreTests : IAsyncLifetime
{
    private readonly ExampleHarness _harness = new();

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _harness.DisposeAsync();

    /// <summary>The environment of every process in a test: the harness's store, and the lease TTL all of them must share.</summary>
    private Dictionary<string, string> Env(string ttlSeconds = "10")
    {
        var env = _harness.BaseEnvironment();
        env["DYN_LEASE_TTL_SECS"] = ttlSeconds;
        return env;
    }

    [Fact]
    public async Task Instances_shows_each_server_as_a_table_row_and_as_json()
    {
        var (worker, _) = await _harness.StartServerAsync("server1", "never", new Dictionary<string, string> { ["DYN_INSTANCE_TAGS"] = "role=worker,label=worker-a" });
        var (plain, _) = await _harness.StartServerAsync("server2", "never");
        var w = await Rmctl.ServingAsync(worker);
        var p = await Rmctl.ServingAsync(plain);

        var table = await Rmctl.RunAsync(Env(), "instances");
        table.ExitCode.ShouldBe(0, table.Description);
        var workerRow = table.StdoutLines.Single(l => l.Contains(w.Id, StringComparison.Ordinal));
        workerRow.ShouldContain("demo/backend/generate");
        workerRow.ShouldContain(w.Address);
        workerRow.ShouldContain("tcp");
        workerRow.ShouldContain("label=worker-a,role=worker");
        AgePattern().IsMatch(workerRow).ShouldBeTrue(workerRow);
        var plainRow = table.StdoutLines.Single(l => l.Contains(p.Id, StringComparison.Ordinal));
        plainRow.ShouldContain(p.Address);
        table.Stdout.ShouldContain("2 instance(s) in file store at " + _harness.StoreDir);

        var json = await Rmctl.RunAsync(Env(), "instances", "demo/backend", "--json");
        json.ExitCode.ShouldBe(0, json.Description);
        var doc = json.Json();
        doc.GetProperty("prefix").GetString().ShouldBe("demo/backend");
        var instances = doc.GetProperty("instances").EnumerateArray().ToList();
        instances.Count.ShouldBe(2, json.Description);
        var wj = instances.Single(i => i.GetProperty("instance_id").GetString() == w.Id);
        wj.GetProperty("endpoint").GetString().ShouldBe("demo/backend/generate");
        wj.GetProperty("address").GetString().ShouldBe(w.Address);
        wj.GetProperty("transport").GetString().ShouldBe("tcp");
        wj.GetProperty("tags").GetProperty("role").GetString().ShouldBe("worker");
        wj.GetProperty("tags").GetProperty("label").GetString().ShouldBe("worker-a");
        wj.GetProperty("metadata").GetProperty("server_name").GetString().ShouldBe("server1");
        wj.GetProperty("age_seconds").GetDouble().ShouldBeInRange(0, 60);
        wj.GetProperty("registered_at").GetDateTimeOffset().ShouldBeInRange(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddSeconds(1));

        // A prefix that matches nothing: an empty list, not an error.
        var none = await Rmctl.RunAsync(Env(), "instances", "other", "--json");
        none.ExitCode.ShouldBe(0, none.Description);
        none.Json().GetProperty("instances").GetArrayLength().ShouldBe(0);
        var noneText = await Rmctl.RunAsync(Env(), "instances", "demo/backend/other");
        noneText.ExitCode.ShouldBe(0, noneText.Description);
        noneText.Stdout.ShouldContain("No instances registered under demo/backend/other");
    }

    [Fact]
    public async Task Watch_reports_joined_then_left_for_a_graceful_stop_and_expired_for_a_killed_server_and_stops_on_ctrl_c()
    {
        // A short TTL (shared by every process, as it must be on one file store) so the expiry comes quickly.
        var env = Env(ttlSeconds: "4");
        await using var json = Rmctl.Start(env, "watch", "--json");
        await using var text = Rmctl.Start(env, "watch", "demo");
        await json.WaitForLineAsync("\"event\":\"synced\"", TimeSpan.FromSeconds(20));
        await text.WaitForLineAsync("-- watching demo in file store at", TimeSpan.FromSeconds(20));

        var (graceful, _) = await _harness.StartServerAsync("server1", "never", env);
        var (killed, _) = await _harness.StartServerAsync("server2", "never", env);
        var g = await Rmctl.ServingAsync(graceful);
        var k = await Rmctl.ServingAsync(killed);
        await Rmctl.WaitForEventAsync(json, "joined", g.Id);
        await Rmctl.WaitForEventAsync(json, "joined", k.Id);

        await graceful.SendSigtermAsync();
        await Rmctl.WaitForEventAsync(json, "left", g.Id);
        await killed.KillHardAsync();
        await Rmctl.WaitForEventAsync(json, "expired", k.Id, TimeSpan.FromSeconds(15));

        var events = Rmctl.JsonLines(json.StdoutLines, json.Describe());
        events.Select(e => e.GetProperty("event").GetString()).ShouldBe(["synced", "joined", "joined", "left", "expired"], json.Describe());
        var left = events.Single(e => e.GetProperty("event").GetString() == "left");
        left.GetProperty("instance_id").GetString().ShouldBe(g.Id);
        left.GetProperty("address").GetString().ShouldBe(g.Address);
        left.GetProperty("reason").GetString()!.ShouldStartWith("deregistered", Case.Sensitive, json.Describe());
        var expired = events.Single(e => e.GetProperty("event").GetString() == "expired");
        expired.GetProperty("instance_id").GetString().ShouldBe(k.Id);
        expired.GetProperty("reason").GetString()!.ShouldContain("lease ran out", Case.Sensitive, json.Describe());
        expired.GetProperty("last_renewed").GetDateTimeOffset().ShouldBeLessThan(DateTimeOffset.UtcNow.AddSeconds(-3), "an expired instance's file was last touched about a TTL before");

        // The text view saw the same, one line per event.
        await text.WaitForLineAsync($"expired   demo/backend/generate  {k.Id}", TimeSpan.FromSeconds(5));
        text.StdoutLines.ShouldContain(l => l.Contains($"joined    demo/backend/generate  {g.Id}  {g.Address}", StringComparison.Ordinal), text.Describe());
        text.StdoutLines.ShouldContain(l => l.Contains($"left      demo/backend/generate  {g.Id}  {g.Address}  deregistered", StringComparison.Ordinal), text.Describe());

        // Ctrl+C is how a watch ends: promptly, with exit code 0.
        await Rmctl.InterruptAsync(json);
        await Rmctl.InterruptAsync(text);
        (await json.WaitForExitAsync(TimeSpan.FromSeconds(5))).ShouldBe(0, json.Describe());
        (await text.WaitForExitAsync(TimeSpan.FromSeconds(5))).ShouldBe(0, text.Describe());
    }

    [Fact]
    public async Task Call_prints_each_item_with_its_instance_and_the_failover()
    {
        var (bad, _) = await _harness.StartServerAsync("server1", "always");
        var (good, _) = await _harness.StartServerAsync("server2", "never");
        var s1 = await Rmctl.ServingAsync(bad);
        var s2 = await Rmctl.ServingAsync(good);

        // Round robin starts at a random instance: run until a call starts on the failing one (1 in 2 each time).
        var failedOver = false;
        for (var run = 0; run < 12 && !failedOver; run++)
        {
            var call = await Rmctl.RunAsync(Env(), "call", "demo/backend/generate", "--input", "hello world", "--json");
            call.ExitCode.ShouldBe(0, call.Description);
            var events = Rmctl.JsonLines(call.StdoutLines, call.Description);
            var items = events.Where(e => e.GetProperty("event").GetString() == "item").ToList();
            var done = events[^1];
            done.GetProperty("event").GetString().ShouldBe("completed", call.Description);
            if (events[0].GetProperty("instance_id").GetString() == s2.Id)
            {
                items.Select(Data).ShouldBe([.. "hello world".Select(c => $"from server: server2, data: {c}")], call.Description);
                items.ShouldAllBe(i => i.GetProperty("instance_id").GetString() == s2.Id, call.Description);
                done.GetProperty("failovers").GetInt32().ShouldBe(0);
                continue;
            }

            failedOver = true;
            events.Select(e => e.GetProperty("event").GetString()).ShouldBe(
                ["attempt", "item", "item", "attempt_failed", "failover", "attempt", .. Enumerable.Repeat("item", 11), "completed"], call.Description);
            events[0].GetProperty("instance_id").GetString().ShouldBe(s1.Id);
            events[0].GetProperty("address").GetString().ShouldBe(s1.Address);
            items.Take(2).ShouldAllBe(i => i.GetProperty("instance_id").GetString() == s1.Id && i.GetProperty("attempt").GetInt32() == 1, call.Description);
            items.Take(2).Select(Data).ShouldBe(["from server: server1, data: h", "from server: server1, data: e"]);
            var failed = events[3];
            failed.GetProperty("instance_id").GetString().ShouldBe(s1.Id);
            failed.GetProperty("items").GetInt32().ShouldBe(2);
            failed.GetProperty("error").GetString().ShouldBe("Stream ended before generation completed");
            var failover = events[4];
            failover.GetProperty("from_instance_id").GetString().ShouldBe(s1.Id);
            failover.GetProperty("to_instance_id").GetString().ShouldBe(s2.Id);
            failover.GetProperty("to_address").GetString().ShouldBe(s2.Address);
            failover.GetProperty("error").GetString().ShouldBe("Stream ended before generation completed");

            // Without migration the second attempt starts over on server2.
            items.Skip(2).ShouldAllBe(i => i.GetProperty("instance_id").GetString() == s2.Id && i.GetProperty("attempt").GetInt32() == 2, call.Description);
            items.Skip(2).Select(Data).ShouldBe([.. "hello world".Select(c => $"from server: server2, data: {c}")]);
            done.GetProperty("items").GetInt32().ShouldBe(13);
            done.GetProperty("failovers").GetInt32().ShouldBe(1);
            done.GetProperty("instances").EnumerateArray().Select(i => i.GetString()).ShouldBe([s1.Id, s2.Id]);
        }

        failedOver.ShouldBeTrue("no call started on the failing server in 12 runs");

        // With migration, as a person reads it: the stream continues on server2 after the two items server1 sent.
        var migrated = false;
        for (var run = 0; run < 12 && !migrated; run++)
        {
            var call = await Rmctl.RunAsync(Env(), "call", "demo/backend/generate", "--input", "hello world", "--migration");
            call.ExitCode.ShouldBe(0, call.Description);
            if (!call.StdoutLines[0].Contains(s1.Id, StringComparison.Ordinal))
            {
                continue;
            }

            migrated = true;
            var lines = call.StdoutLines;
            lines[0].ShouldBe($"attempt 1: instance {s1.Id} at {s1.Address} (tcp)", call.Description);
            lines[1].ShouldBe($"  {s1.Id}  from server: server1, data: h", call.Description);
            lines[2].ShouldBe($"  {s1.Id}  from server: server1, data: e", call.Description);
            lines[3].ShouldBe($"attempt 1 failed on instance {s1.Id} after 2 item(s): Stream ended before generation completed", call.Description);
            lines[4].ShouldBe($"failover -> attempt 2: instance {s2.Id} at {s2.Address} (tcp), resuming after 2 item(s)", call.Description);
            lines[5].ShouldBe($"  {s2.Id}  from server: server2, data: l", call.Description);
            lines[^1].ShouldBe("completed: 11 item(s) from 2 instance(s) in 2 attempt(s), 1 failover(s)", call.Description);
        }

        migrated.ShouldBeTrue("no migrating call started on the failing server in 12 runs");

        static string Data(JsonElement item) => item.GetProperty("data").GetString()!;
    }

    [Fact]
    public async Task Usage_errors_exit_2_writes_need_yes_and_store_commands_round_trip()
    {
        Directory.CreateDirectory(_harness.StoreDir);
        var env = Env();

        async Task Usage(string expected, params string[] args)
        {
            var r = await Rmctl.RunAsync(env, args);
            r.ExitCode.ShouldBe(2, r.Description);
            r.Stdout.ShouldBeEmpty(r.Description);
            r.Stderr.ShouldContain(expected, Case.Sensitive, r.Description);
            r.ShouldHaveNoStackTrace();
        }

        await Usage("Required command was not provided");
        await Usage("Unrecognized command or argument 'bogus'", "bogus");
        await Usage("add --yes to confirm", "store", "put", "debug/key", "value");
        await Usage("add --yes to confirm", "store", "rm", "debug/key", "--json");
        await Usage("must not start or end with '/'", "store", "get", "/debug/key");
        await Usage("the mem store lives inside one process", "instances", "--store", "mem");
        await Usage("is not an endpoint: expected namespace/component/endpoint", "call", "demo/backend", "--input", "x");
        await Usage("Option '--input' is required", "call", "demo/backend/generate");
        await Usage("load-balancing policy 'Bogus'", "call", "demo/backend/generate", "--input", "x", "--policy", "Bogus");

        var put = await Rmctl.RunAsync(env, "store", "put", "debug/key", "hello", "--yes");
        put.ExitCode.ShouldBe(0, put.Description);
        put.Stderr.ShouldContain("expires in 10 s", Case.Sensitive, put.Description);
        var get = await Rmctl.RunAsync(env, "store", "get", "debug/key");
        get.ExitCode.ShouldBe(0, get.Description);
        get.Stdout.ShouldBe("hello");
        var getJson = (await Rmctl.RunAsync(env, "store", "get", "debug/key", "--json")).Json();
        getJson.GetProperty("value").GetString().ShouldBe("hello");
        getJson.GetProperty("location").GetString()!.ShouldStartWith(_harness.StoreDir);
        var ls = (await Rmctl.RunAsync(env, "store", "ls", "debug/", "--json")).Json();
        ls.GetProperty("keys").EnumerateArray().Select(k => k.GetProperty("key").GetString()).ShouldBe(["debug/key"]);
        var rm = await Rmctl.RunAsync(env, "store", "rm", "debug/key", "--yes", "--json");
        rm.ExitCode.ShouldBe(0, rm.Description);
        rm.Json().GetProperty("ok").GetBoolean().ShouldBeTrue();
        var gone = await Rmctl.RunAsync(env, "store", "get", "debug/key");
        gone.ExitCode.ShouldBe(1, gone.Description);
        gone.Stderr.ShouldContain($"key 'debug/key' not found in file store at {_harness.StoreDir}");
    }

    [Fact]
    public async Task An_unreachable_store_is_named_with_exit_code_1_and_no_stack_trace()
    {
        var missing = Path.Combine(_harness.StoreDir, "does-not-exist");
        var file = await Rmctl.RunAsync(Env(), "instances", "--file-dir", missing, "--json");
        file.ExitCode.ShouldBe(1, file.Description);
        file.Stdout.ShouldBeEmpty(file.Description);
        file.Stderr.ShouldContain($"error: file store at {missing}: the directory does not exist", Case.Sensitive, file.Description);
        file.ShouldHaveNoStackTrace();

        // Nothing listens on a port just taken from the OS and released.
        var dead = $"http://127.0.0.1:{RequestMigration.Tests.Etcd.EtcdFixture.FreePort()}";
        var etcdEnv = new Dictionary<string, string> { ["DYN_STORE_KV"] = "etcd", ["ETCD_ENDPOINTS"] = dead };
        foreach (var args in new[] { ["instances"], ["watch", "--json"], ["call", "demo/backend/generate", "--input", "x"], new[] { "store", "ls" } })
        {
            var r = await Rmctl.RunAsync(etcdEnv, args);
            r.ExitCode.ShouldBe(1, r.Description);
            r.Stderr.ShouldContain($"error: etcd at {dead} is unavailable", Case.Sensitive, r.Description);
            r.Stderr.ShouldContain("hint: start etcd there", Case.Sensitive, r.Description);
            r.ShouldHaveNoStackTrace();
        }
    }

    [GeneratedRegex(@"\s\d+s\s*$")]
    private static partial Regex AgePattern();
}
