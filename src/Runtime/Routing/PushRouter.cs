using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using RequestMigration.Diagnostics;
using RequestMigration.Discovery.Instances;
using RequestMigration.Health;
using RequestMigration.Transport;
using RequestMigration.Wire;

namespace RequestMigration.Routing;

/// <summary>
/// Sends requests of one endpoint to its instances and streams the responses back. When an attempt fails
/// (the stream breaks, the connection is refused or lost, the server reports the stream incomplete) the
/// router reports that instance down and immediately tries another available one, up to
/// <see cref="RouterOptions.MaxAttempts"/>. Each failed attempt reaches the consumer as an error item
/// (<see cref="Annotated{T}.IsError"/>), so it can tell attempts apart.
/// </summary>
/// <typeparam name="TRequest">Request type.</typeparam>
/// <typeparam name="TResponse">Response item type.</typeparam>
public sealed partial class PushRouter<TRequest, TResponse> : IAsyncDisposable
{
    private readonly RequestMigrationRuntime _runtime;
    private readonly RouterOptions _options;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _watch;
    private readonly KeyValuePair<string, object?> _endpointTag;
    private uint _next;
    private int _disposed;

    internal PushRouter(RequestMigrationRuntime runtime, EndpointId endpoint, RouterOptions options)
    {
        options.Validate();
        _runtime = runtime;
        _options = options;
        Endpoint = endpoint;
        _logger = runtime.LoggerFactory.CreateLogger<PushRouter<TRequest, TResponse>>();
        Instances = new InstanceAvailability(endpoint, options.InhibitDuration, runtime.Time, runtime.LoggerFactory.CreateLogger<InstanceAvailability>());
        _next = (uint)Random.Shared.Next();
        _endpointTag = new("endpoint", endpoint.Path);
        _watch = WatchLoopAsync(_stop.Token);
    }

    /// <summary>The endpoint this router serves.</summary>
    public EndpointId Endpoint { get; }

    /// <summary>The instance view (<c>instance_source</c> / <c>instance_avail</c>).</summary>
    public InstanceAvailability Instances { get; }

    /// <summary>Waits until at least one instance is available.</summary>
    /// <exception cref="TimeoutException">None within <paramref name="timeout"/>.</exception>
    public Task WaitForInstancesAsync(TimeSpan timeout, CancellationToken cancellationToken = default) =>
        Instances.WaitForAvailableAsync(timeout, _runtime.Time, cancellationToken);

    /// <summary>
    /// Streams the response to <paramref name="request"/> from an instance chosen by the router's mode
    /// (round robin or random), failing over as described on the class.
    /// </summary>
    /// <exception cref="NoInstancesException">No instance is available.</exception>
    /// <exception cref="AttemptsExhaustedException">Every attempt failed.</exception>
    /// <exception cref="EndpointFailedException">The endpoint rejected the request (not retried).</exception>
    public IAsyncEnumerable<Annotated<TResponse>> GenerateAsync(TRequest request, CancellationToken cancellationToken = default)
    {
        if (_options.Mode == RouterMode.Direct)
        {
            throw new InvalidOperationException("this router is in direct mode: use DirectAsync with an instance id");
        }

        return RunAsync(request, null, cancellationToken);
    }

    /// <summary>Streams the response from one named instance (one attempt, no failover).</summary>
    /// <exception cref="InstanceNotFoundException">Discovery does not know that instance.</exception>
    public IAsyncEnumerable<Annotated<TResponse>> DirectAsync(TRequest request, ulong instanceId, CancellationToken cancellationToken = default) =>
        RunAsync(request, instanceId, cancellationToken);

    /// <summary>Takes an instance out of rotation until the next reconcile, logging why.</summary>
    public void ReportInstanceDown(ulong instanceId, string error) => ReportInstanceDown(instanceId, error, "-", 0);

    private void ReportInstanceDown(ulong instanceId, string error, string requestId, int attempt)
    {
        Log.ReportingDown(_logger, instanceId, error, Endpoint.Path, requestId, attempt);
        Instances.ReportInstanceDown(instanceId);
    }

    /// <summary>Stops watching discovery.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync().ConfigureAwait(false);
        try
        {
            await _watch.ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }

        Instances.Dispose();
        _stop.Dispose();
    }

    private async IAsyncEnumerable<Annotated<TResponse>> RunAsync(TRequest request, ulong? direct, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var payload = new PooledBufferWriter();
        _runtime.Serializer.Serialize(payload, request);
        var requestId = Guid.NewGuid().ToString("N");
        var attempts = direct is null ? _options.MaxAttempts : 1;
        var lastError = string.Empty;
        long delivered = 0;

        // Retries that don't count as attempts and aren't shown: a pooled connection the server closed
        // while idle, or an instance that is draining. Bounded so a misbehaving peer can't loop us.
        var freeRetries = _options.MaxAttempts;
        for (var attempt = 1; attempt <= attempts; attempt++)
        {
            var instance = Pick(direct, attempt);
            if (instance is null)
            {
                // Every instance is inhibited after earlier failures: this attempt fails like the others.
                lastError = NoInstancesException.MessageFor(Endpoint.Path);
                if (!_options.Migration)
                {
                    yield return Annotated<TResponse>.FromError(lastError);
                }

                continue;
            }

            RuntimeMetrics.Attempts.Add(1, _endpointTag);
            string? failure = null;
            string? fatal = null;
            var completed = false;
            var framesSeen = 0;
            var drainingReject = false;
            var header = new RequestHeader(Endpoint.Path, requestId, attempt, _options.Migration && delivered > 0 ? ResumeToken.Create(delivered) : ReadOnlyMemory<byte>.Empty);
            ClientStream? stream = null;
            try
            {
                stream = await _runtime.Transports.ConnectorFor(instance.Transport).OpenAsync(instance.Address, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested && IsTransportFailure(ex))
            {
                failure = $"cannot reach instance {instance.InstanceId:x} at {instance.Address}: {ex.Message}";
            }

            if (stream is not null)
            {
                var clean = false;
                var sendFailed = false;
                try
                {
                    try
                    {
                        Send(stream.Writer, header, payload);
                        await stream.Writer.FlushAsync(cancellationToken).ConfigureAwait(false);
                    }
                    catch (ProtocolException ex) when (ex.Code == ErrorCode.FrameTooLarge)
                    {
                        throw new ArgumentException($"request to {Endpoint.Path} is too large: {ex.Message}", nameof(request), ex);
                    }
                    catch (Exception ex) when (!cancellationToken.IsCancellationRequested && IsTransportFailure(ex))
                    {
                        // The server may have rejected the request and closed before we finished writing
                        // (say, a frame over its limit): read on, its error frame is likely waiting.
                        sendFailed = true;
                    }

                    while (true)
                    {
                        bool got;
                        try
                        {
                            got = await stream.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                        }
                        catch (ProtocolException ex) when (ex.Code == ErrorCode.FrameTooLarge)
                        {
                            // Our own limit, not the instance's fault: another instance would send the same.
                            fatal = $"a response item from instance {instance.InstanceId:x} is too large: {ex.Message}";
                            break;
                        }
                        catch (ProtocolException ex)
                        {
                            failure = $"{StreamErrors.StreamIncomplete} (instance sent {ex.Message})";
                            break;
                        }
                        catch (Exception ex) when (!cancellationToken.IsCancellationRequested && IsTransportFailure(ex))
                        {
                            failure = StreamErrors.StreamIncomplete;
                            break;
                        }

                        if (!got)
                        {
                            failure = StreamErrors.StreamIncomplete;
                            break;
                        }

                        framesSeen++;
                        var type = stream.Reader.Type;
                        if (type == FrameType.Data)
                        {
                            TResponse item;
                            try
                            {
                                item = _runtime.Serializer.Deserialize<TResponse>(stream.Reader.Payload);
                            }
                            catch (Exception ex)
                            {
                                fatal = $"cannot decode a response item from instance {instance.InstanceId:x}: {ex.Message}";
                                break;
                            }

                            delivered++;
                            yield return Annotated<TResponse>.FromData(item);
                            continue;
                        }

                        if (type == FrameType.End)
                        {
                            completed = clean = true;
                            break;
                        }

                        if (type == FrameType.Error)
                        {
                            clean = true;
                            var (code, message) = stream.Reader.ReadError();
                            drainingReject = code == ErrorCode.Unavailable && framesSeen == 1;
                            if (StreamErrors.IsRetryable(code, message))
                            {
                                failure = message;
                            }
                            else
                            {
                                fatal = message;
                            }

                            break;
                        }

                        failure = $"{StreamErrors.StreamIncomplete} (instance sent an unexpected {type} frame)";
                        break;
                    }
                }
                finally
                {
                    // Only a stream that ended with its end or error frame may carry another request;
                    // anything else (including the consumer leaving early) resets it, which cancels the handler.
                    if (clean && !sendFailed)
                    {
                        await stream.ReleaseAsync().ConfigureAwait(false);
                    }
                    else
                    {
                        await stream.DisposeAsync().ConfigureAwait(false);
                    }
                }
            }

            if (completed)
            {
                yield break;
            }

            if (fatal is not null)
            {
                throw new EndpointFailedException(fatal);
            }

            cancellationToken.ThrowIfCancellationRequested();
            failure ??= StreamErrors.StreamIncomplete;
            if (freeRetries > 0 && framesSeen == 0 && stream is { Reused: true })
            {
                // A pooled connection the server closed while it sat idle: nothing reached the handler.
                // Not the instance's fault; try it again on a fresh connection.
                freeRetries--;
                attempt--;
                continue;
            }

            if (freeRetries > 0 && drainingReject)
            {
                // The instance is shutting down and did nothing with the request: go elsewhere quietly.
                freeRetries--;
                Instances.ReportInstanceDown(instance.InstanceId);
                attempt--;
                continue;
            }

            lastError = failure;
            ReportInstanceDown(instance.InstanceId, failure, requestId, attempt);
            if (!_options.Migration)
            {
                // Without migration the next attempt starts over, so the consumer must know where it begins.
                yield return Annotated<TResponse>.FromError(failure);
            }

            if (attempt < attempts)
            {
                RuntimeMetrics.Failovers.Add(1, _endpointTag);
                Log.Retrying(_logger, requestId, attempt + 1, attempts, Endpoint.Path);
            }
        }

        throw new AttemptsExhaustedException(attempts, lastError);
    }

    /// <summary>The instance for an attempt; null when none is available on a retry (attempt 1 throws).</summary>
    private InstanceRecord? Pick(ulong? direct, int attempt)
    {
        if (direct is { } id)
        {
            return Instances.FindInSource(id) ?? throw new InstanceNotFoundException(id, Endpoint.Path);
        }

        var available = Instances.AvailableArray;
        if (available.Length == 0)
        {
            return attempt == 1 ? throw new NoInstancesException(Endpoint.Path) : null;
        }

        var index = _options.Mode == RouterMode.Random
            ? Random.Shared.Next(available.Length)
            : (int)(Interlocked.Increment(ref _next) % (uint)available.Length);
        return available[index];
    }

    private static void Send(FrameWriter writer, RequestHeader header, PooledBufferWriter payload)
    {
        var output = writer.BeginFrame(FrameType.Request);
        header.Write(output);
        payload.WrittenMemory.Span.CopyTo(output.GetSpan(payload.WrittenCount));
        output.Advance(payload.WrittenCount);
        writer.EndFrame();
    }

    private static bool IsTransportFailure(Exception ex) =>
        TransportErrors.IsBroken(ex)
        || ex is System.Net.Sockets.SocketException or System.Security.Authentication.AuthenticationException or OperationCanceledException or FormatException;

    private async Task WatchLoopAsync(CancellationToken ct)
    {
        var failures = 0;
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await foreach (var change in _runtime.Registry.WatchAsync(Endpoint, ct).ConfigureAwait(false))
                {
                    failures = 0;
                    Instances.Apply(change);
                }
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is not ObjectDisposedException)
            {
                // Keep routing to the instances we last knew while discovery is unreachable.
                if (failures++ == 0)
                {
                    LogWatchFailed(Endpoint.Path, ex.Message);
                }
            }

            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(5000, 250 * (1 << Math.Min(failures, 5)))), _runtime.Time, ct).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }



    [LoggerMessage(Level = LogLevel.Warning, Message = "discovery watch for endpoint={Endpoint} failed ({Reason}); routing to the last known instances until it recovers")]
    private partial void LogWatchFailed(string endpoint, string reason);
}
