using System.Buffers;
using System.Buffers.Binary;
using RequestMigration.Wire;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Wire;

public sealed class FrameTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Frames_round_trip_in_order()
    {
        var ms = new MemoryStream();
        using (var w = new FrameWriter(ms, 1024))
        {
            var p = w.BeginFrame(FrameType.Data);
            p.Write("abc"u8);
            w.EndFrame();
            w.WriteError(ErrorCode.Handler, "boom");
            w.WriteEnd();
            await w.FlushAsync(Ct);
        }

        ms.Position = 0;
        await using var r = new FrameReader(ms, 1024);
        (await r.ReadAsync(Ct)).ShouldBeTrue();
        r.Type.ShouldBe(FrameType.Data);
        r.Payload.ToArray().ShouldBe("abc"u8.ToArray());
        (await r.ReadAsync(Ct)).ShouldBeTrue();
        r.Type.ShouldBe(FrameType.Error);
        r.ReadError().ShouldBe((ErrorCode.Handler, "boom"));
        (await r.ReadAsync(Ct)).ShouldBeTrue();
        r.Type.ShouldBe(FrameType.End);
        r.Payload.Length.ShouldBe(0);
        (await r.ReadAsync(Ct)).ShouldBeFalse();
    }

    [Fact]
    public async Task Many_frames_split_across_reads_are_reassembled()
    {
        var ms = new MemoryStream();
        using (var w = new FrameWriter(ms, 1 << 20))
        {
            for (var i = 0; i < 5000; i++)
            {
                var p = w.BeginFrame(FrameType.Data);
                BinaryPrimitives.WriteInt32BigEndian(p.GetSpan(4), i);
                p.Advance(4);
                w.EndFrame();
            }

            await w.FlushAsync(Ct);
        }

        ms.Position = 0;
        await using var r = new FrameReader(new TrickleStream(ms, 7), 1 << 20);
        for (var i = 0; i < 5000; i++)
        {
            (await r.ReadAsync(Ct)).ShouldBeTrue();
            BinaryPrimitives.ReadInt32BigEndian(r.Payload.ToArray()).ShouldBe(i);
        }

        (await r.ReadAsync(Ct)).ShouldBeFalse();
    }

    [Fact]
    public async Task Truncated_frame_is_reported_with_sizes()
    {
        var bytes = new byte[] { 0, 0, 0, 100, (byte)FrameType.Data, 1, 2, 3 };
        await using var r = new FrameReader(new MemoryStream(bytes), 1024);
        var ex = await Should.ThrowAsync<ProtocolException>(async () => await r.ReadAsync(Ct));
        ex.Message.ShouldContain("truncated frame");
        ex.Message.ShouldContain("100");
    }

    [Fact]
    public async Task Truncated_header_is_reported()
    {
        await using var r = new FrameReader(new MemoryStream([0, 0]), 1024);
        (await Should.ThrowAsync<ProtocolException>(async () => await r.ReadAsync(Ct))).Message.ShouldContain("header");
    }

    [Fact]
    public async Task Oversized_frame_is_rejected_before_reading_its_payload()
    {
        var bytes = new byte[] { 0, 0x10, 0, 0, (byte)FrameType.Data };
        await using var r = new FrameReader(new MemoryStream(bytes), 1024);
        var ex = await Should.ThrowAsync<ProtocolException>(async () => await r.ReadAsync(Ct));
        ex.Code.ShouldBe(ErrorCode.FrameTooLarge);
        ex.Message.ShouldContain("1048576");
        ex.Message.ShouldContain("1024");
    }

    [Fact]
    public async Task Unknown_frame_type_is_rejected()
    {
        await using var r = new FrameReader(new MemoryStream([0, 0, 0, 0, 0x7f]), 1024);
        (await Should.ThrowAsync<ProtocolException>(async () => await r.ReadAsync(Ct))).Message.ShouldContain("unknown frame type 0x7f");
    }

    [Fact]
    public void Writer_refuses_frames_over_the_limit_and_stays_usable()
    {
        var ms = new MemoryStream();
        using var w = new FrameWriter(ms, 16);
        var p = w.BeginFrame(FrameType.Data);
        p.Write(new byte[17]);
        Should.Throw<ProtocolException>(w.EndFrame).Code.ShouldBe(ErrorCode.FrameTooLarge);
        w.Buffered.ShouldBe(0);
        w.WriteEnd();
        w.Buffered.ShouldBe(FrameWriter.HeaderSize);
    }

    [Fact]
    public void Request_header_round_trips_with_payload()
    {
        var buffer = new ArrayBufferWriter<byte>();
        new RequestHeader("ns/comp/ep", "req-1", 3, new byte[] { 9, 8 }).Write(buffer);
        buffer.Write("{\"x\":1}"u8);
        var header = RequestHeader.Read(new ReadOnlySequence<byte>(buffer.WrittenMemory), out var payload);
        header.EndpointPath.ShouldBe("ns/comp/ep");
        header.RequestId.ShouldBe("req-1");
        header.Attempt.ShouldBe(3);
        header.Resume.ToArray().ShouldBe(new byte[] { 9, 8 });
        payload.ToArray().ShouldBe("{\"x\":1}"u8.ToArray());
    }

    [Fact]
    public void Request_header_carries_trace_context_in_version_2_and_stays_version_1_without_it()
    {
        using var traced = new PooledBufferWriter();
        new RequestHeader("ns/comp/ep", "req-1", 2, new byte[] { 7 }, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "vendor=x").Write(traced);
        traced.WrittenMemory.Span[0].ShouldBe((byte)2);
        var read = RequestHeader.Read(new ReadOnlySequence<byte>(traced.WrittenMemory), out _);
        (read.TraceParent, read.TraceState, read.Attempt, read.Resume.ToArray()[0]).ShouldBe(("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "vendor=x", 2, (byte)7));

        using var plain = new PooledBufferWriter();
        new RequestHeader("ns/comp/ep", "req-1", 1, ReadOnlyMemory<byte>.Empty).Write(plain);
        plain.WrittenMemory.Span[0].ShouldBe((byte)1);
        RequestHeader.Read(new ReadOnlySequence<byte>(plain.WrittenMemory), out _).TraceParent.ShouldBeNull();
    }

    [Theory]
    [InlineData(new byte[] { }, "empty")]
    [InlineData(new byte[] { 3 }, "unsupported version 3 (expected 1 or 2)")]
    [InlineData(new byte[] { 1, 0 }, "truncated before the endpoint path length")]
    [InlineData(new byte[] { 1, 0, 50, 65 }, "endpoint path length 50 is larger than the frame")]
    [InlineData(new byte[] { 1, 0, 1, 0xff, 0, 0, 0, 1, 0, 0, 0, 0 }, "endpoint path is not valid UTF-8")]
    [InlineData(new byte[] { 1, 0, 1, 65, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0x7f }, "resume field length")]
    public void Malformed_request_headers_name_the_problem(byte[] bytes, string expected)
    {
        Should.Throw<ProtocolException>(() => RequestHeader.Read(new ReadOnlySequence<byte>(bytes), out _)).Message.ShouldContain(expected);
    }

    /// <summary>Returns at most <c>chunk</c> bytes per read, to exercise reassembly.</summary>
    private sealed class TrickleStream(Stream inner, int chunk) : Stream
    {
        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override void Flush()
        {
        }

        public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, Math.Min(count, chunk));

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            inner.ReadAsync(buffer[..Math.Min(buffer.Length, chunk)], cancellationToken);

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
