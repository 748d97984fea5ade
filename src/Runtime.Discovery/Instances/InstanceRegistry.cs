using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace RequestMigration.Discovery.Instances;

/// <summary>What happened to an instance of a watched endpoint.</summary>
internal enum InstanceChangeKind
{
    /// <summary>The instance appeared or its record changed.</summary>
    Upserted,

    /// <summary>The instance is gone.</summary>
    Removed,

    /// <summary>Every instance that existed when the watch started has been reported.</summary>
    Synced,
}

/// <summary>A change to the instances of one endpoint.</summary>
/// <param name="Kind">Upserted, removed, or the end of the initial snapshot.</param>
/// <param name="InstanceId">The instance (0 for <see cref="InstanceChangeKind.Synced"/>).</param>
/// <param name="Record">The record for upserts; <see langword="null"/> otherwise.</param>
internal readonly record struct InstanceChange(InstanceChangeKind Kind, ulong InstanceId, InstanceRecord? Record);

/// <summary>
/// Reads and writes instance records in a <see cref="IKeyValueStore"/>. A value that is not a valid
/// record is skipped with a warning naming its key, so one corrupt entry never stops routing to the rest.
/// </summary>
internal sealed partial class InstanceRegistry(IKeyValueStore store, ILogger<InstanceRegistry>? logger = null)
{
    private readonly ILogger _logger = (ILogger?)logger ?? NullLogger.Instance;

    /// <summary>The underlying store.</summary>
    public IKeyValueStore Store => store;

    /// <summary>Writes (or replaces) a record, bound to <paramref name="leaseId"/> when non-zero.</summary>
    public ValueTask PutAsync(InstanceRecord record, long leaseId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(record);
        var bytes = JsonSerializer.SerializeToUtf8Bytes(record, DiscoveryJsonContext.Default.InstanceRecord);
        return store.PutAsync(InstanceKeys.Key(record.EndpointId, record.InstanceId), bytes, leaseId, cancellationToken);
    }

    /// <summary>Deletes a record.</summary>
    public ValueTask<bool> DeleteAsync(EndpointId endpoint, ulong instanceId, CancellationToken cancellationToken = default) =>
        store.DeleteAsync(InstanceKeys.Key(endpoint, instanceId), cancellationToken);

    /// <summary>Lists the valid records of an endpoint.</summary>
    public async ValueTask<IReadOnlyList<InstanceRecord>> ListAsync(EndpointId endpoint, CancellationToken cancellationToken = default)
    {
        var entries = await store.ListAsync(InstanceKeys.Prefix(endpoint), cancellationToken).ConfigureAwait(false);
        var list = new List<InstanceRecord>(entries.Count);
        foreach (var e in entries)
        {
            if (TryDecode(e.Key, e.Value.Span, out var record))
            {
                list.Add(record);
            }
        }

        return list;
    }

    /// <summary>
    /// Watches the instances of an endpoint: each existing instance, then <see cref="InstanceChangeKind.Synced"/>,
    /// then changes. A record that becomes corrupt is reported as removed.
    /// </summary>
    public async IAsyncEnumerable<InstanceChange> WatchAsync(EndpointId endpoint, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var known = new HashSet<ulong>();
        await foreach (var ev in store.WatchAsync(InstanceKeys.Prefix(endpoint), cancellationToken).ConfigureAwait(false))
        {
            switch (ev.Kind)
            {
                case WatchEventKind.Synced:
                    yield return new InstanceChange(InstanceChangeKind.Synced, 0, null);
                    break;
                case WatchEventKind.Put when TryDecode(ev.Key, ev.Value.Span, out var record):
                    known.Add(record.InstanceId);
                    yield return new InstanceChange(InstanceChangeKind.Upserted, record.InstanceId, record);
                    break;
                case WatchEventKind.Put:
                case WatchEventKind.Delete:
                    if (InstanceKeys.TryParseInstanceId(ev.Key, out var id) && known.Remove(id))
                    {
                        yield return new InstanceChange(InstanceChangeKind.Removed, id, null);
                    }

                    break;
            }
        }
    }

    /// <summary>Decodes a record, checking it against its key; logs a warning naming the key when it is invalid.</summary>
    internal bool TryDecode(string key, ReadOnlySpan<byte> value, out InstanceRecord record)
    {
        record = null!;
        if (!InstanceKeys.TryParseInstanceId(key, out var idFromKey))
        {
            LogInvalid(key, "the last key segment is not a hexadecimal instance id");
            return false;
        }

        try
        {
            var decoded = JsonSerializer.Deserialize(value, DiscoveryJsonContext.Default.InstanceRecord);
            if (decoded is null)
            {
                LogInvalid(key, "the value is JSON null");
                return false;
            }

            if (decoded.InstanceId != idFromKey)
            {
                LogInvalid(key, $"the record's instance_id {decoded.InstanceId:x} does not match the key");
                return false;
            }

            if (string.IsNullOrWhiteSpace(decoded.Address) || string.IsNullOrWhiteSpace(decoded.Transport))
            {
                LogInvalid(key, "the record has no address or transport");
                return false;
            }

            // Older servers wrote no tags (or alternates); a JSON null reads as none rather than as a broken record.
            record = decoded with { Tags = decoded.Tags ?? InstanceTags.None, Alternates = decoded.Alternates ?? [], Metadata = decoded.Metadata ?? InstanceTags.None };
            return true;
        }
        catch (JsonException ex)
        {
            LogInvalid(key, ex.Message);
            return false;
        }
    }

    private void LogInvalid(string key, string reason)
    {
        var location = store.DescribeLocation(key);
        LogInvalidEntry(key, location == key ? store.Name : location, reason);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "discovery: ignoring instance key '{Key}' (stored in {Location}): not a valid instance record ({Reason})")]
    private partial void LogInvalidEntry(string key, string location, string reason);
}
