using System.Buffers;
using RequestMigration.Discovery.Instances;
using RequestMigration.Serialization;
using RequestMigration.Wire;

namespace RequestMigration.Serving;

/// <summary>A registered endpoint with its types erased, so the session loop is not generic.</summary>
internal interface IEndpointInvoker
{
    EndpointId Endpoint { get; }

    IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Decodes the request now (the payload is only valid until the next frame is read) and returns the response writer.</summary>
    Func<FrameWriter, Func<CancellationToken, ValueTask>, CancellationToken, Task> Prepare(ReadOnlySequence<byte> payload, RequestContext context);
}

internal sealed class EndpointInvoker<TRequest, TResponse>(
    EndpointId endpoint,
    EndpointHandler<TRequest, TResponse> handler,
    IPayloadSerializer serializer,
    IReadOnlyDictionary<string, string> metadata) : IEndpointInvoker
{
    public EndpointId Endpoint => endpoint;

    public IReadOnlyDictionary<string, string> Metadata => metadata;

    public Func<FrameWriter, Func<CancellationToken, ValueTask>, CancellationToken, Task> Prepare(ReadOnlySequence<byte> payload, RequestContext context)
    {
        TRequest request;
        try
        {
            request = serializer.Deserialize<TRequest>(payload);
        }
        catch (Exception ex)
        {
            throw new ProtocolException($"cannot decode the request for endpoint '{endpoint}': {ex.Message}");
        }

        if (request is null)
        {
            // The serializer yields null for a JSON null; handlers are promised a request, not null.
            throw new ProtocolException($"cannot decode the request for endpoint '{endpoint}': the payload is null");
        }

        return (writer, flush, ct) => StreamAsync(request, context, writer, flush, ct);
    }

    private async Task StreamAsync(TRequest request, RequestContext context, FrameWriter writer, Func<CancellationToken, ValueTask> flush, CancellationToken ct)
    {
        var items = handler(request, context).GetAsyncEnumerator(ct);
        try
        {
            while (true)
            {
                var move = items.MoveNextAsync();
                if (!move.IsCompleted && writer.Buffered > 0)
                {
                    // The producer is about to wait: send what we have now. A producer that is never
                    // waiting gets its items batched into few writes and TLS records instead.
                    try
                    {
                        await flush(ct).ConfigureAwait(false);
                    }
                    catch
                    {
                        // The handler is still running (suspended inside MoveNextAsync), and an async iterator
                        // cannot be disposed then: DisposeAsync would throw NotSupportedException, hiding this
                        // exception and never running the handler's finally. A failed flush has fired the
                        // handler's token (the session sees to that), so wait for it to stop first.
                        await WaitQuietlyAsync(move).ConfigureAwait(false);
                        throw;
                    }
                }

                if (!await move.ConfigureAwait(false))
                {
                    break;
                }

                ct.ThrowIfCancellationRequested();
                var output = writer.BeginFrame(FrameType.Data);
                try
                {
                    serializer.Serialize(output, items.Current);
                }
                catch
                {
                    writer.CancelFrame();
                    throw;
                }

                writer.EndFrame();
                if (writer.Buffered >= FrameWriter.FlushThreshold)
                {
                    await flush(ct).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            await items.DisposeAsync().ConfigureAwait(false);
        }
    }

    // What the handler does after the consumer is gone no longer matters; the flush's exception says why
    // the response ended.
    private static async ValueTask WaitQuietlyAsync(ValueTask<bool> move)
    {
        try
        {
            await move.ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
        }
    }
}
