using System.Text;
using RequestMigration.Discovery;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Discovery;

/// <summary>
/// The behaviour every <see cref="IKeyValueStore"/> must have. Each backend derives from this class and
/// says how to open a store; the same tests then run against mem, file and etcd.
/// </summary>
public abstract class StoreConformanceTests : IAsyncLifetime
{
    private readonly List<IKeyValueStore> _opened = [];

    /// <summary>A unique prefix per test so backends that share state (a directory, an etcd) don't interfere.</summary>
    protected string Prefix { get; } = $"conf/{Guid.NewGuid():N}/";

    /// <summary>Opens a store; two calls must see the same data (two processes of one deployment).</summary>
    protected abstract ValueTask<IKeyValueStore> OpenStoreAsync();

    /// <summary>How long after a lease's TTL its keys may still be visible on this backend.</summary>
    protected virtual TimeSpan ExpirySlack => TimeSpan.FromSeconds(1);

    /// <summary>Shortest lease TTL the backend supports.</summary>
    protected virtual TimeSpan ShortTtl => TimeSpan.FromSeconds(1);

    public virtual ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public virtual async ValueTask DisposeAsync()
    {
        foreach (var s in _opened)
        {
            await s.DisposeAsync();
        }

        GC.SuppressFinalize(this);
    }

    protected async ValueTask<IKeyValueStore> OpenAsync()
    {
        var s = await OpenStoreAsync();
        _opened.Add(s);
        return s;
    }

    protected static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    protected static string S(ReadOnlyMemory<byte> b) => Encoding.UTF8.GetString(b.Span);

    protected static CancellationToken Timeout(int seconds = 10) => new CancellationTokenSource(TimeSpan.FromSeconds(seconds)).Token;

    [Fact]
    public async Task Put_then_get_returns_the_value()
    {
        var store = await OpenAsync();
        await store.PutAsync(Prefix + "a", B("one"), cancellationToken: Timeout());
        var e = await store.GetAsync(Prefix + "a", Timeout());
        e.ShouldNotBeNull();
        S(e.Value).ShouldBe("one");
        (await store.GetAsync(Prefix + "missing", Timeout())).ShouldBeNull();
    }

    [Fact]
    public async Task Put_replaces_and_delete_removes()
    {
        var store = await OpenAsync();
        await store.PutAsync(Prefix + "a", B("one"), cancellationToken: Timeout());
        await store.PutAsync(Prefix + "a", B("two"), cancellationToken: Timeout());
        S((await store.GetAsync(Prefix + "a", Timeout()))!.Value).ShouldBe("two");
        (await store.DeleteAsync(Prefix + "a", Timeout())).ShouldBeTrue();
        (await store.DeleteAsync(Prefix + "a", Timeout())).ShouldBeFalse();
        (await store.GetAsync(Prefix + "a", Timeout())).ShouldBeNull();
    }

    [Fact]
    public async Task List_returns_only_keys_under_the_prefix_in_key_order()
    {
        var store = await OpenAsync();
        await store.PutAsync(Prefix + "x/b", B("2"), cancellationToken: Timeout());
        await store.PutAsync(Prefix + "x/a", B("1"), cancellationToken: Timeout());
        await store.PutAsync(Prefix + "y/c", B("3"), cancellationToken: Timeout());
        var list = await store.ListAsync(Prefix + "x/", Timeout());
        list.Select(e => e.Key).ShouldBe([Prefix + "x/a", Prefix + "x/b"]);
        list.Select(e => S(e.Value)).ShouldBe(["1", "2"]);
    }

    [Fact]
    public async Task Keys_with_special_characters_round_trip()
    {
        var store = await OpenAsync();
        var key = Prefix + "we ird/.dot%25/ünï";
        await store.PutAsync(key, B("v"), cancellationToken: Timeout());
        (await store.ListAsync(Prefix, Timeout())).Single().Key.ShouldBe(key);
    }

    [Fact]
    public async Task A_second_store_sees_writes_of_the_first()
    {
        var a = await OpenAsync();
        var b = await OpenAsync();
        await a.PutAsync(Prefix + "shared", B("hello"), cancellationToken: Timeout());
        S((await b.GetAsync(Prefix + "shared", Timeout()))!.Value).ShouldBe("hello");
    }

    [Fact]
    public async Task Put_with_unknown_lease_is_rejected()
    {
        var store = await OpenAsync();
        await Should.ThrowAsync<LeaseNotFoundException>(async () => await store.PutAsync(Prefix + "a", B("x"), 0x7123_4567_89ab, Timeout()));
    }

    [Fact]
    public async Task Revoking_a_lease_deletes_its_keys_only()
    {
        var store = await OpenAsync();
        var lease = await store.GrantLeaseAsync(TimeSpan.FromSeconds(30), Timeout());
        await store.PutAsync(Prefix + "leased", B("x"), lease, Timeout());
        await store.PutAsync(Prefix + "plain", B("y"), cancellationToken: Timeout());
        await store.RevokeLeaseAsync(lease, Timeout());
        (await store.GetAsync(Prefix + "leased", Timeout())).ShouldBeNull();
        (await store.GetAsync(Prefix + "plain", Timeout())).ShouldNotBeNull();
        (await store.KeepAliveAsync(lease, Timeout())).ShouldBeFalse();
    }

    [Fact]
    public async Task Kept_alive_lease_survives_and_expired_lease_loses_its_keys()
    {
        var store = await OpenAsync();
        var kept = await store.GrantLeaseAsync(ShortTtl, Timeout());
        var dropped = await store.GrantLeaseAsync(ShortTtl, Timeout());
        await store.PutAsync(Prefix + "kept", B("k"), kept, Timeout());
        await store.PutAsync(Prefix + "dropped", B("d"), dropped, Timeout());
        var deadline = DateTime.UtcNow + ShortTtl + ExpirySlack + ExpirySlack;
        while (DateTime.UtcNow < deadline)
        {
            (await store.KeepAliveAsync(kept, Timeout())).ShouldBeTrue();
            if (await store.GetAsync(Prefix + "dropped", Timeout()) is null)
            {
                break;
            }

            await AdvanceAsync(TimeSpan.FromMilliseconds(200));
        }

        (await store.GetAsync(Prefix + "dropped", Timeout())).ShouldBeNull("a lease that is not kept alive must expire within TTL + slack");
        (await store.GetAsync(Prefix + "kept", Timeout())).ShouldNotBeNull();
        (await store.KeepAliveAsync(dropped, Timeout())).ShouldBeFalse();
    }

    [Fact]
    public async Task Watch_starts_with_a_snapshot_then_reports_changes_in_order()
    {
        var store = await OpenAsync();
        await store.PutAsync(Prefix + "w/1", B("a"), cancellationToken: Timeout());
        var ct = Timeout(15);
        await using var watch = store.WatchAsync(Prefix + "w/", ct).GetAsyncEnumerator(ct);
        (await Next(watch)).ShouldSatisfyAllConditions(e => e.Kind.ShouldBe(WatchEventKind.Put), e => e.Key.ShouldBe(Prefix + "w/1"));
        (await Next(watch)).Kind.ShouldBe(WatchEventKind.Synced);

        await store.PutAsync(Prefix + "w/2", B("b"), cancellationToken: Timeout());
        var put = await Next(watch);
        put.Kind.ShouldBe(WatchEventKind.Put);
        put.Key.ShouldBe(Prefix + "w/2");
        S(put.Value).ShouldBe("b");

        await store.PutAsync(Prefix + "other", B("ignored"), cancellationToken: Timeout());
        await store.DeleteAsync(Prefix + "w/1", Timeout());
        var del = await Next(watch);
        del.Kind.ShouldBe(WatchEventKind.Delete);
        del.Key.ShouldBe(Prefix + "w/1");
    }

    [Fact]
    public async Task Several_watchers_each_see_every_change()
    {
        var store = await OpenAsync();
        var other = await OpenAsync();
        var ct = Timeout(15);
        await using var w1 = store.WatchAsync(Prefix, ct).GetAsyncEnumerator(ct);
        await using var w2 = other.WatchAsync(Prefix, ct).GetAsyncEnumerator(ct);
        (await Next(w1)).Kind.ShouldBe(WatchEventKind.Synced);
        (await Next(w2)).Kind.ShouldBe(WatchEventKind.Synced);
        await store.PutAsync(Prefix + "k", B("v"), cancellationToken: Timeout());
        (await Next(w1)).Key.ShouldBe(Prefix + "k");
        (await Next(w2)).Key.ShouldBe(Prefix + "k");
    }

    [Fact]
    public async Task Lease_expiry_is_reported_to_watchers_as_delete()
    {
        var store = await OpenAsync();
        var observer = await OpenAsync();
        var lease = await store.GrantLeaseAsync(ShortTtl, Timeout());
        await store.PutAsync(Prefix + "e", B("v"), lease, Timeout());
        var ct = Timeout(20);
        await using var w = observer.WatchAsync(Prefix, ct).GetAsyncEnumerator(ct);
        (await Next(w)).Kind.ShouldBe(WatchEventKind.Put);
        (await Next(w)).Kind.ShouldBe(WatchEventKind.Synced);
        var next = Next(w, TimeSpan.FromSeconds(15));
        var start = DateTime.UtcNow;
        while (!next.IsCompleted && DateTime.UtcNow - start < TimeSpan.FromSeconds(15))
        {
            await AdvanceAsync(TimeSpan.FromMilliseconds(250));
        }

        var ev = await next;
        ev.Kind.ShouldBe(WatchEventKind.Delete);
        ev.Key.ShouldBe(Prefix + "e");
    }

    [Fact]
    public async Task Cancelling_a_watch_ends_it()
    {
        var store = await OpenAsync();
        using var cts = new CancellationTokenSource();
        var seen = 0;
        var task = Task.Run(async () =>
        {
            await foreach (var _ in store.WatchAsync(Prefix, cts.Token))
            {
                seen++;
            }
        });
        await Task.Delay(200);
        await cts.CancelAsync();
        var ex = await Record.ExceptionAsync(() => task.WaitAsync(TimeSpan.FromSeconds(5)));
        (ex is null or OperationCanceledException).ShouldBeTrue($"unexpected {ex}");
        seen.ShouldBe(1); // only the Synced marker
    }

    /// <summary>Lets time pass: real time by default; a backend on a fake clock advances it.</summary>
    protected virtual Task AdvanceAsync(TimeSpan by) => Task.Delay(by);

    protected static async Task<WatchEvent> Next(IAsyncEnumerator<WatchEvent> e, TimeSpan? timeout = null)
    {
        var move = e.MoveNextAsync().AsTask();
        (await move.WaitAsync(timeout ?? TimeSpan.FromSeconds(10))).ShouldBeTrue("the watch ended early");
        return e.Current;
    }
}
