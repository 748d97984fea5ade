using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Transport;
using RequestMigration.Transport.Mux;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Transport;

/// <summary>The TCP multiplexing layer over a real loopback socket pair: streams, flow control, resets, protocol errors.</summary>
public sealed class MuxConnectionTests : IAsyncLifetime
{
    private readonly TestLoggerProvider _logs = new();
    private readonly List<IAsyncDisposable> _owned = [];
    private ILoggerFactory? _loggerFactory;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public ValueTask InitializeAsync()
    {
        _loggerFactory = LoggerFactory.Create(b => b.AddProvider(_logs).SetMinimumLevel(LogLevel.Debug));
        return ValueTask.CompletedTask;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var d in _owned)
        {
            await d.DisposeAsync();
        }

        _loggerFactory?.Dispose();
    }

    [Fact]
    public async Task Many_interleaved_streams_each_get_exactly_their_own_bytes()
    {
        var (client, server) = await PairAsync();
        var serving = ServeEchoAsync(server);
        var results = await Task.WhenAll(Enumerable.Range(1, 50).Select(async n =>
        {
            await using var s = client.OpenStream();
            var payload = Enumerable.Range(0, n * 1000).Select(i => (byte)(i * n)).ToArray();
            for (var o = 0; o < payload.Length; o += 777)
            {
                await s.WriteAsync(payload.AsMemory(o, Math.Min(777, payload.Length - o)), Ct);
            }

            s.CompleteWrites();
            var back = await ReadAllAsync(s);
            return back.SequenceEqual(payload);
        }));

        results.ShouldAllBe(ok => ok);
        client.ActiveStreams.ShouldBe(0);
        await WaitUntil(() => server.ActiveStreams == 0);
    }

    [Fact]
    public async Task A_slow_consumer_holds_back_only_its_own_stream()
    {
        var (client, server) = await PairAsync();
        var big = new byte[8 * 1024 * 1024];
        var fastDone = new TaskCompletionSource();
        _ = Task.Run(async () =>
        {
            while (await server.AcceptStreamAsync(Ct) is { } s)
            {
                var stream = s;
                _ = Task.Run(async () =>
                {
                    await ReadAllAsync(stream);
                    await stream.WriteAsync(big, Ct);
                    stream.CompleteWrites();
                }, Ct);
            }
        }, Ct);

        // The slow stream's consumer never reads: its sender stops at the stream window (256 KiB).
        var slow = client.OpenStream();
        slow.CompleteWrites();
        var fast = client.OpenStream();
        fast.CompleteWrites();
        var got = await ReadAllAsync(fast).WaitAsync(TimeSpan.FromSeconds(20), Ct);
        got.Length.ShouldBe(big.Length);

        // And the slow one still gets everything once it reads.
        (await ReadAllAsync(slow).WaitAsync(TimeSpan.FromSeconds(20), Ct)).Length.ShouldBe(big.Length);
    }

    [Fact]
    public async Task Cancelling_one_stream_of_many_cancels_only_that_one()
    {
        var (client, server) = await PairAsync();
        var serverStreams = new List<MuxStream>();
        var accepted = Task.Run(async () =>
        {
            for (var i = 0; i < 3; i++)
            {
                serverStreams.Add((await server.AcceptStreamAsync(Ct))!);
            }
        }, Ct);
        var streams = Enumerable.Range(0, 3).Select(_ => client.OpenStream()).ToArray();
        foreach (var s in streams)
        {
            await s.WriteAsync(new byte[] { 1 }, Ct);
        }

        await accepted.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        var buffer = new byte[16];
        (await serverStreams[1].ReadAsync(buffer, Ct)).ShouldBe(1);

        // A reset drops whatever was not read yet (as QUIC's RESET_STREAM does); here everything was.
        streams[1].Abort();
        var ex = await Should.ThrowAsync<IOException>(async () => await serverStreams[1].ReadExactlyAsync(buffer.AsMemory(0, 1), Ct));
        ex.Message.ShouldContain("reset by the peer");

        // The others carry on both ways.
        await serverStreams[0].WriteAsync(new byte[] { 42 }, Ct);
        serverStreams[0].CompleteWrites();
        (await ReadAllAsync(streams[0])).ShouldBe(new byte[] { 42 });
        await serverStreams[2].WriteAsync(new byte[] { 43 }, Ct);
        (await streams[2].ReadAsync(buffer, Ct)).ShouldBe(1);
        buffer[0].ShouldBe((byte)43);
    }

    [Fact]
    public async Task A_broken_connection_breaks_exactly_its_streams()
    {
        var (client, server) = await PairAsync();
        var (other, otherServer) = await PairAsync();
        _ = ServeEchoAsync(otherServer);
        var victims = Enumerable.Range(0, 5).Select(_ => client.OpenStream()).ToArray();
        foreach (var s in victims)
        {
            await s.WriteAsync(new byte[] { 1 }, Ct);
        }

        server.Abort("test: connection lost");
        foreach (var s in victims)
        {
            await Should.ThrowAsync<IOException>(async () => await ReadAllAsync(s).WaitAsync(TimeSpan.FromSeconds(10), Ct));
        }

        client.IsAlive.ShouldBeFalse();
        var survivor = other.OpenStream();
        await survivor.WriteAsync(new byte[] { 7 }, Ct);
        survivor.CompleteWrites();
        (await ReadAllAsync(survivor)).ShouldBe(new byte[] { 7 });
    }

    [Fact]
    public async Task A_graceful_goaway_lets_open_streams_finish_and_refuses_new_ones()
    {
        var (client, server) = await PairAsync();
        var accepted = server.AcceptStreamAsync(Ct).AsTask();
        var open = client.OpenStream();
        await open.WriteAsync(new byte[] { 1 }, Ct);
        var serverSide = (await accepted.WaitAsync(TimeSpan.FromSeconds(10), Ct))!;

        server.GoAway("stopping");
        await WaitUntil(() => !client.CanOpenStream);
        await serverSide.WriteAsync(new byte[] { 9 }, Ct);
        serverSide.CompleteWrites();
        open.CompleteWrites();
        (await ReadAllAsync(open)).ShouldBe(new byte[] { 9 });
        Should.Throw<IOException>(() => client.OpenStream()).Message.ShouldContain("going away");
    }

    [Fact]
    public async Task A_writer_waiting_for_window_fails_when_the_peer_answers_and_stops_reading_and_keeps_the_answer()
    {
        var (client, server) = await PairAsync();
        var stream = client.OpenStream();
        await stream.WriteAsync(new byte[] { 1 }, Ct);
        var serverSide = (await server.AcceptStreamAsync(Ct))!;

        // The client sends far more than the stream window; the server answers after one byte and is done.
        var big = new byte[2 * 1024 * 1024];
        var writing = stream.WriteAsync(big, Ct).AsTask();
        var buffer = new byte[1];
        await serverSide.ReadExactlyAsync(buffer, Ct);
        await serverSide.WriteAsync(new byte[] { 77 }, Ct);
        serverSide.CompleteWrites();
        await serverSide.DisposeAsync();

        (await Should.ThrowAsync<IOException>(() => writing.WaitAsync(TimeSpan.FromSeconds(10), Ct))).Message.ShouldContain("stopped reading");
        (await ReadAllAsync(stream)).ShouldBe(new byte[] { 77 });
    }

    [Theory]
    [InlineData("never-opened")]
    [InlineData("reused-id")]
    [InlineData("window")]
    [InlineData("too-many")]
    [InlineData("oversized")]
    public async Task A_peer_that_breaks_the_rules_gets_a_protocol_error_for_its_connection_only(string rule)
    {
        var (raw, server) = await RawClientAsync(maxStreams: 2);
        var (good, goodServer) = await PairAsync();
        _ = ServeEchoAsync(goodServer);
        switch (rule)
        {
            case "never-opened":
                await Frame(raw, MuxFrameType.Data, MuxFlags.None, 9, [1]);
                break;
            case "reused-id":
                await Frame(raw, MuxFrameType.Data, MuxFlags.Open | MuxFlags.Fin, 5, [1]);
                await Frame(raw, MuxFrameType.Data, MuxFlags.Open, 3, [1]);
                break;
            case "window":
                await Frame(raw, MuxFrameType.Data, MuxFlags.Open, 1, new byte[60_000]);
                for (var i = 0; i < 5; i++)
                {
                    await Frame(raw, MuxFrameType.Data, MuxFlags.None, 1, new byte[60_000]);
                }

                break;
            case "too-many":
                await Frame(raw, MuxFrameType.Data, MuxFlags.Open, 1, [1]);
                await Frame(raw, MuxFrameType.Data, MuxFlags.Open, 3, [1]);
                await Frame(raw, MuxFrameType.Data, MuxFlags.Open, 5, [1]);
                break;
            case "oversized":
                var header = new byte[MuxProtocol.HeaderSize];
                MuxProtocol.WriteHeader(header, MuxProtocol.MaxFramePayload + 1, MuxFrameType.Data, MuxFlags.Open, 1);
                await raw.WriteAsync(header, Ct);
                break;
        }

        // The server sends GOAWAY naming the rule and closes; the log says so once.
        var goAway = await ReadGoAwayAsync(raw);
        var expected = rule switch
        {
            "never-opened" => "Data for stream 9, which was never opened",
            "reused-id" => "stream 3 cannot be opened: ids are odd and increase (the last was 5); a closed id is never reused",
            "window" => "stream 1 sent 60000 bytes past its flow-control window of 262144 bytes",
            "too-many" => "stream 5 opened while 2 streams were open; at most 2 are allowed",
            _ => $"frame of {MuxProtocol.MaxFramePayload + 1} bytes exceeds the mux frame limit of {MuxProtocol.MaxFramePayload} bytes",
        };
        goAway.ShouldBe(expected);
        await server.Completion.WaitAsync(TimeSpan.FromSeconds(10), Ct);
        server.IsAlive.ShouldBeFalse();
        _logs.Entries.Count(e => e.Message.Contains("protocol error", StringComparison.Ordinal)).ShouldBe(1);

        // Another connection is untouched.
        var s = good.OpenStream();
        await s.WriteAsync(new byte[] { 5 }, Ct);
        s.CompleteWrites();
        (await ReadAllAsync(s)).ShouldBe(new byte[] { 5 });
    }

    private async Task<(MuxConnection Client, MuxConnection Server)> PairAsync(int maxStreams = 1000)
    {
        var (a, b) = await SocketPairAsync();
        var serverTask = MuxConnection.StartAsync(new NetworkStream(b, ownsSocket: true), isClient: false, MuxSettings.Default(maxStreams), "server", _loggerFactory!.CreateLogger("mux"), Ct);
        var client = await MuxConnection.StartAsync(new NetworkStream(a, ownsSocket: true), isClient: true, MuxSettings.Default(1000), "client", _loggerFactory!.CreateLogger("mux"), Ct);
        var server = await serverTask;
        _owned.Add(client);
        _owned.Add(server);
        return (client, server);
    }

    private async Task<(NetworkStream Raw, MuxConnection Server)> RawClientAsync(int maxStreams)
    {
        var (a, b) = await SocketPairAsync();
        var raw = new NetworkStream(a, ownsSocket: true);
        var serverTask = MuxConnection.StartAsync(new NetworkStream(b, ownsSocket: true), isClient: false, MuxSettings.Default(maxStreams), "server-raw", _loggerFactory!.CreateLogger("mux"), Ct);
        var settings = new byte[12];
        BinaryPrimitives.WriteInt32BigEndian(settings, 1000);
        BinaryPrimitives.WriteInt32BigEndian(settings.AsSpan(4), 256 * 1024);
        BinaryPrimitives.WriteInt32BigEndian(settings.AsSpan(8), 4 * 1024 * 1024);
        await Frame(raw, MuxFrameType.Settings, MuxFlags.None, 0, settings);
        var server = await serverTask;
        _owned.Add(server);
        _owned.Add(raw);
        return (raw, server);
    }

    private static async Task Frame(Stream raw, MuxFrameType type, MuxFlags flags, uint id, byte[] payload)
    {
        var frame = new byte[MuxProtocol.HeaderSize + payload.Length];
        MuxProtocol.WriteHeader(frame, payload.Length, type, flags, id);
        payload.CopyTo(frame, MuxProtocol.HeaderSize);
        await raw.WriteAsync(frame, Ct);
    }

    private static async Task<string> ReadGoAwayAsync(Stream raw)
    {
        var header = new byte[MuxProtocol.HeaderSize];
        while (true)
        {
            await raw.ReadExactlyAsync(header, Ct);
            var length = BinaryPrimitives.ReadInt32BigEndian(header);
            var payload = new byte[length];
            await raw.ReadExactlyAsync(payload, Ct);
            if ((MuxFrameType)header[4] == MuxFrameType.GoAway)
            {
                BinaryPrimitives.ReadUInt32BigEndian(payload.AsSpan(4)).ShouldNotBe(MuxProtocol.CodeNone);
                return System.Text.Encoding.UTF8.GetString(payload, 8, payload.Length - 8);
            }
        }
    }

    private static async Task<(Socket, Socket)> SocketPairAsync()
    {
        using var listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        listener.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        listener.Listen(1);
        var client = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var accept = listener.AcceptAsync(Ct).AsTask();
        await client.ConnectAsync(listener.LocalEndPoint!, Ct);
        return (client, await accept);
    }

    private static async Task ServeEchoAsync(MuxConnection server)
    {
        while (await server.AcceptStreamAsync(Ct) is { } s)
        {
            var stream = s;
            _ = Task.Run(async () =>
            {
                var data = await ReadAllAsync(stream);
                await stream.WriteAsync(data, Ct);
                stream.CompleteWrites();
            }, Ct);
        }
    }

    private static async Task<byte[]> ReadAllAsync(Stream s)
    {
        using var ms = new MemoryStream();
        var buffer = new byte[8192];
        int n;
        while ((n = await s.ReadAsync(buffer, Ct)) > 0)
        {
            ms.Write(buffer, 0, n);
        }

        return ms.ToArray();
    }

    private static async Task WaitUntil(Func<bool> condition)
    {
        for (var i = 0; i < 500 && !condition(); i++)
        {
            await Task.Delay(10, Ct);
        }

        condition().ShouldBeTrue();
    }
}
