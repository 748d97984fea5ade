using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using RequestMigration.Serialization;
using RequestMigration.Wire;

namespace RequestMigration.Tests.BadInput;

/// <summary>A frame as received, parsed by the test itself (not by the runtime's reader).</summary>
internal sealed record ReceivedFrame(byte Type, byte[] Payload)
{
    public FrameType FrameType => (FrameType)Type;

    public ErrorCode Code => Type == (byte)FrameType.Error && Payload.Length > 0 ? (ErrorCode)Payload[0] : throw new InvalidOperationException($"not an error frame: {this}");

    public string Message => Encoding.UTF8.GetString(Payload, 1, Payload.Length - 1);

    /// <summary>A Data frame's payload decoded as a JSON string.</summary>
    public string Text => JsonSerializer.Deserialize<string>(Payload) ?? throw new InvalidOperationException("null item");

    public override string ToString() => Type == (byte)FrameType.Error && Payload.Length > 0
        ? $"Error({(ErrorCode)Payload[0]}: {Message})"
        : $"{(FrameType)Type}({Encoding.UTF8.GetString(Payload)})";
}

/// <summary>
/// A hand-driven client connection to an endpoint server: plain TCP (for garbage before TLS) or TLS with
/// the runtime's ALPN and trust in certs/ca.pem only. Writes raw bytes or frames; reads frames itself.
/// </summary>
internal sealed class RawConnection : IAsyncDisposable
{
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(10);

    private readonly Socket _socket;
    private readonly NetworkStream _network;
    private SslStream? _ssl;

    private RawConnection(Socket socket)
    {
        _socket = socket;
        _network = new NetworkStream(socket, ownsSocket: true);
    }

    public static string CertsDir => Path.Combine(AppContext.BaseDirectory, "certs");

    private Stream Stream => (Stream?)_ssl ?? _network;

    public static async Task<RawConnection> ConnectTcpAsync(IPEndPoint endpoint)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        using var cts = new CancellationTokenSource(DefaultTimeout);
        try
        {
            await socket.ConnectAsync(endpoint, cts.Token);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        return new RawConnection(socket);
    }

    public static async Task<RawConnection> ConnectTlsAsync(IPEndPoint endpoint, string alpn = "rm/1")
    {
        var conn = await ConnectTcpAsync(endpoint);
        try
        {
            await conn.AuthenticateAsync(alpn);
        }
        catch
        {
            await conn.DisposeAsync();
            throw;
        }

        return conn;
    }

    public SslApplicationProtocol NegotiatedProtocol => _ssl?.NegotiatedApplicationProtocol ?? default;

    public async Task AuthenticateAsync(string alpn)
    {
        var ca = X509Certificate2.CreateFromPem(await File.ReadAllTextAsync(Path.Combine(CertsDir, "ca.pem")));
        var policy = new X509ChainPolicy { TrustMode = X509ChainTrustMode.CustomRootTrust, RevocationMode = X509RevocationMode.NoCheck };
        policy.CustomTrustStore.Add(ca);
        _ssl = new SslStream(_network, leaveInnerStreamOpen: true);
        using var cts = new CancellationTokenSource(DefaultTimeout);
        await _ssl.AuthenticateAsClientAsync(
            new SslClientAuthenticationOptions
            {
                TargetHost = "localhost",
                ApplicationProtocols = [new SslApplicationProtocol(alpn)],
                EnabledSslProtocols = SslProtocols.Tls13 | SslProtocols.Tls12,
                CertificateRevocationCheckMode = X509RevocationMode.NoCheck,
                CertificateChainPolicy = policy,
            },
            cts.Token);
    }

    public static byte[] Frame(byte type, ReadOnlySpan<byte> payload) => Header((uint)payload.Length, type).Concat(payload.ToArray()).ToArray();

    public static byte[] Header(uint announcedLength, byte type)
    {
        var h = new byte[5];
        BinaryPrimitives.WriteUInt32BigEndian(h, announcedLength);
        h[4] = type;
        return h;
    }

    /// <summary>A Request frame payload: the runtime's <see cref="RequestHeader"/> followed by <paramref name="body"/>.</summary>
    public static byte[] RequestPayload(string endpointPath, ReadOnlySpan<byte> body, string? requestId = null, ReadOnlyMemory<byte> resume = default)
    {
        var w = new ArrayBufferWriter<byte>();
        new RequestHeader(endpointPath, requestId ?? Guid.NewGuid().ToString("N"), 1, resume).Write(w);
        w.Write(body);
        return w.WrittenSpan.ToArray();
    }

    public static byte[] Json<T>(T value)
    {
        var w = new ArrayBufferWriter<byte>();
        JsonPayloadSerializer.Default.Serialize(w, value);
        return w.WrittenSpan.ToArray();
    }

    public static byte[] RequestFrame<T>(string endpointPath, T request) => Frame((byte)FrameType.Request, RequestPayload(endpointPath, Json(request)));

    public async Task SendAsync(byte[] bytes)
    {
        using var cts = new CancellationTokenSource(DefaultTimeout);
        await Stream.WriteAsync(bytes, cts.Token);
        await Stream.FlushAsync(cts.Token);
    }

    /// <summary>Half-closes: the server reads end of stream, while we can still read its answer.</summary>
    public void ShutdownWrite() => _socket.Shutdown(SocketShutdown.Send);

    /// <summary>Reads one frame; null on a clean end of stream before a frame starts.</summary>
    /// <exception cref="EndOfStreamException">The stream ended inside a frame.</exception>
    public async Task<ReceivedFrame?> ReadFrameAsync(TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? DefaultTimeout);
        var header = new byte[5];
        var got = await ReadUpToAsync(header, cts.Token);
        if (got == 0)
        {
            return null;
        }

        if (got < header.Length)
        {
            throw new EndOfStreamException($"stream ended after {got} of 5 header bytes");
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(header);
        if (length > 1024 * 1024)
        {
            throw new InvalidDataException($"server announced a {length}-byte frame");
        }

        var payload = new byte[length];
        got = await ReadUpToAsync(payload, cts.Token);
        if (got < payload.Length)
        {
            throw new EndOfStreamException($"stream ended after {got} of {length} payload bytes");
        }

        return new ReceivedFrame(header[4], payload);
    }

    /// <summary>Reads frames until End or Error (inclusive).</summary>
    public async Task<List<ReceivedFrame>> ReadResponseAsync(TimeSpan? timeout = null)
    {
        var frames = new List<ReceivedFrame>();
        while (true)
        {
            var f = await ReadFrameAsync(timeout) ?? throw new EndOfStreamException($"stream ended before End/Error after {frames.Count} frame(s): {string.Join(", ", frames)}");
            frames.Add(f);
            if (f.FrameType is FrameType.End or FrameType.Error)
            {
                return frames;
            }
        }
    }

    /// <summary>
    /// Waits for the server to close the connection: true when a read ends (0 bytes, reset or TLS close)
    /// within <paramref name="timeout"/>, discarding whatever arrives before; false if it stays open.
    /// </summary>
    public async Task<bool> WaitForCloseAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var buffer = new byte[4096];
        try
        {
            while (true)
            {
                if (await Stream.ReadAsync(buffer, cts.Token) == 0)
                {
                    return true;
                }
            }
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (Exception ex) when (ex is IOException or SocketException or AuthenticationException or ObjectDisposedException)
        {
            return true;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_ssl is not null)
        {
            await _ssl.DisposeAsync();
        }

        await _network.DisposeAsync();
    }

    private async Task<int> ReadUpToAsync(byte[] buffer, CancellationToken ct)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            int n;
            try
            {
                n = await Stream.ReadAsync(buffer.AsMemory(total), ct);
            }
            catch (OperationCanceledException)
            {
                throw new TimeoutException($"no complete frame within the timeout ({total} of {buffer.Length} bytes read)");
            }

            if (n == 0)
            {
                break;
            }

            total += n;
        }

        return total;
    }
}
