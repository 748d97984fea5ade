using System.Buffers;
using System.IO.Pipelines;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Wire;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Wire;

/// <summary>
/// What a frame reader holds for frames still arriving: charged to a shared budget, refused over it, and
/// given back (to the budget and to the memory pool) when the frame completes or the reader is disposed.
/// Bytes are fed through a pipe, so "still arriving" is exact; counters are polled, not timed.
/// </summary>
public sealed class FrameReaderBudgetTests
{
    private const int Large = 100 * 1024;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task An_incomplete_large_frame_is_charged_as_it_arrives_and_released_when_it_completes()
    {
        var budget = new BufferBudget(1024 * 1024);
        var pipe = NewPipe();
        await using var reader = new FrameReader(pipe.Reader.AsStream(), 1024 * 1024, budget);

        await pipe.Writer.WriteAsync(Header(Large), Ct);
        await pipe.Writer.WriteAsync(new byte[40 * 1024], Ct);
        var read = reader.ReadAsync(Ct).AsTask();
        (await WaitUntilAsync(() => budget.InUse == 40 * 1024)).ShouldBeTrue($"in use: {budget.InUse}");

        await pipe.Writer.WriteAsync(new byte[30 * 1024], Ct);
        (await WaitUntilAsync(() => budget.InUse == 70 * 1024)).ShouldBeTrue($"in use: {budget.InUse}");

        await pipe.Writer.WriteAsync(new byte[Large - (70 * 1024)], Ct);
        (await read).ShouldBeTrue();
        reader.Payload.Length.ShouldBe(Large);
        budget.InUse.ShouldBe(0);
    }

    [Fact]
    public async Task A_frame_that_would_take_the_shared_total_over_the_budget_is_refused_as_Unavailable()
    {
        var budget = new BufferBudget(128 * 1024);
        var first = NewPipe();
        var second = NewPipe();
        await using var holder = new FrameReader(first.Reader.AsStream(), 1024 * 1024, budget);
        var refused = new FrameReader(second.Reader.AsStream(), 1024 * 1024, budget);

        await first.Writer.WriteAsync(Header(Large), Ct);
        await first.Writer.WriteAsync(new byte[90 * 1024], Ct);
        var held = holder.ReadAsync(Ct).AsTask();
        (await WaitUntilAsync(() => budget.InUse == 90 * 1024)).ShouldBeTrue($"in use: {budget.InUse}");

        await second.Writer.WriteAsync(Header(Large), Ct);
        await second.Writer.WriteAsync(new byte[40 * 1024], Ct);
        var ex = await Should.ThrowAsync<ProtocolException>(async () => await refused.ReadAsync(Ct));

        ex.Code.ShouldBe(ErrorCode.Unavailable);
        ex.Message.ShouldContain("131072 (MaxBufferedRequestBytes, DYN_MAX_BUFFERED_BYTES)");
        budget.InUse.ShouldBeLessThanOrEqualTo(128 * 1024);
        await refused.DisposeAsync();
        budget.InUse.ShouldBe(90 * 1024);

        // The holder's frame goes on arriving and completes; nothing is left charged.
        await first.Writer.WriteAsync(new byte[Large - (90 * 1024)], Ct);
        (await held).ShouldBeTrue();
        budget.InUse.ShouldBe(0);
    }

    [Fact]
    public async Task Frames_that_fit_in_the_first_read_buffer_are_not_charged()
    {
        var budget = new BufferBudget(1);
        var pipe = NewPipe();
        await using var reader = new FrameReader(pipe.Reader.AsStream(), 1024 * 1024, budget);
        const int small = FrameReader.UncountedFrameSize - 5;

        await pipe.Writer.WriteAsync(Header(small), Ct);
        await pipe.Writer.WriteAsync(new byte[small / 2], Ct);
        var read = reader.ReadAsync(Ct).AsTask();
        await pipe.Writer.WriteAsync(new byte[small - (small / 2)], Ct);

        (await read).ShouldBeTrue();
        reader.Payload.Length.ShouldBe(small);
        budget.InUse.ShouldBe(0);
    }

    [Fact]
    public async Task Disposing_a_reader_in_the_middle_of_a_large_frame_returns_every_buffer_and_the_budget()
    {
        var budget = new BufferBudget(4 * 1024 * 1024);
        var pool = new CountingPool();
        var pipe = NewPipe();
        var reader = new FrameReader(pipe.Reader.AsStream(), 4 * 1024 * 1024, budget, pool);

        await pipe.Writer.WriteAsync(Header(2 * 1024 * 1024), Ct);
        await pipe.Writer.WriteAsync(new byte[1024 * 1024], Ct);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        var read = reader.ReadAsync(cts.Token).AsTask();
        (await WaitUntilAsync(() => budget.InUse == 1024 * 1024)).ShouldBeTrue($"in use: {budget.InUse}");
        pool.OutstandingBytes.ShouldBeGreaterThanOrEqualTo(1024 * 1024);

        // The session's way out: its read is cancelled (idle timeout, server stopping), then it disposes.
        await cts.CancelAsync();
        await Should.ThrowAsync<OperationCanceledException>(read);
        await reader.DisposeAsync();

        pool.OutstandingBytes.ShouldBe(0);
        budget.InUse.ShouldBe(0);
    }

    [Fact]
    public async Task A_completed_large_frame_gives_its_buffers_back_when_the_next_read_starts()
    {
        var pool = new CountingPool();
        var pipe = NewPipe();
        await using var reader = new FrameReader(pipe.Reader.AsStream(), 4 * 1024 * 1024, new BufferBudget(0), pool);

        await pipe.Writer.WriteAsync((byte[])[.. Header(2 * 1024 * 1024), .. new byte[2 * 1024 * 1024]], Ct);
        (await reader.ReadAsync(Ct)).ShouldBeTrue();
        pool.OutstandingBytes.ShouldBeGreaterThanOrEqualTo(2 * 1024 * 1024);

        var next = reader.ReadAsync(Ct).AsTask();
        (await WaitUntilAsync(() => pool.OutstandingBytes == 0)).ShouldBeTrue($"still rented: {pool.OutstandingBytes}");
        await pipe.Writer.CompleteAsync();
        (await next).ShouldBeFalse();
    }

    // Never pauses the writer: the test writes whole chunks before the reader runs.
    private static Pipe NewPipe() => new(new PipeOptions(pauseWriterThreshold: 0));

    private static byte[] Header(int length)
    {
        var h = new byte[5];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(h, (uint)length);
        h[4] = (byte)FrameType.Data;
        return h;
    }

    private static Task<bool> WaitUntilAsync(Func<bool> condition) => Wait.UntilAsync(condition, TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(5));

    /// <summary>A memory pool that counts the bytes rented and not yet returned.</summary>
    private sealed class CountingPool : MemoryPool<byte>
    {
        private long _outstanding;

        public long OutstandingBytes => Interlocked.Read(ref _outstanding);

        public override int MaxBufferSize => 1024 * 1024;

        public override IMemoryOwner<byte> Rent(int minBufferSize = -1) => new Owner(this, ArrayPool<byte>.Shared.Rent(minBufferSize <= 0 ? 4096 : minBufferSize));

        protected override void Dispose(bool disposing)
        {
        }

        private sealed class Owner : IMemoryOwner<byte>
        {
            private readonly CountingPool _pool;
            private byte[]? _array;

            public Owner(CountingPool pool, byte[] array)
            {
                _pool = pool;
                _array = array;
                Interlocked.Add(ref pool._outstanding, array.Length);
            }

            public Memory<byte> Memory => _array ?? throw new ObjectDisposedException(nameof(Owner));

            public void Dispose()
            {
                if (Interlocked.Exchange(ref _array, null) is { } a)
                {
                    Interlocked.Add(ref _pool._outstanding, -a.Length);
                    ArrayPool<byte>.Shared.Return(a);
                }
            }
        }
    }
}
