namespace RequestMigration.Transport;

/// <summary>
/// The peer refused a stream before doing anything with it (it is going away, or over its stream limit): the
/// request can go elsewhere without counting a failed attempt.
/// </summary>
internal sealed class StreamRefusedException(string message) : IOException(message);

/// <summary>Classifies exceptions from stream and connection I/O on either transport.</summary>
internal static class TransportErrors
{
    /// <summary>The stream or connection broke under us: peer gone, reset, or closed while in use.</summary>
    public static bool IsBroken(Exception ex) =>
        ex is IOException or ObjectDisposedException or System.Net.Quic.QuicException;
}
