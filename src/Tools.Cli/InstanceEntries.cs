using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;

namespace RequestMigration.Tools.Cli;

/// <summary>Instance keys and records as rmctl reads them: the same layout and checks as the runtime's registry.</summary>
internal static class InstanceEntries
{
    /// <summary>
    /// The key prefix to list or watch for an endpoint prefix (<c>demo</c>, <c>demo/backend</c>,
    /// <c>demo/backend/generate</c>, or empty for all).
    /// </summary>
    /// <exception cref="UsageException">The prefix has empty segments or more than three.</exception>
    public static string KeyPrefix(string? endpointPrefix)
    {
        var p = Normalize(endpointPrefix);
        return p.Length == 0 ? InstanceKeys.Bucket + "/" : $"{InstanceKeys.Bucket}/{p}/";
    }

    /// <summary>The prefix without surrounding slashes, checked.</summary>
    /// <exception cref="UsageException">Malformed.</exception>
    public static string Normalize(string? endpointPrefix)
    {
        var p = (endpointPrefix ?? string.Empty).Trim().Trim('/');
        if (p.Length == 0)
        {
            return p;
        }

        var parts = p.Split('/');
        if (parts.Length > 3 || parts.Any(s => s.Length == 0 || s.Any(char.IsWhiteSpace)))
        {
            throw new UsageException($"'{endpointPrefix}' is not an endpoint prefix: expected namespace[/component[/endpoint]], e.g. demo or demo/backend/generate");
        }

        return p;
    }

    /// <summary>
    /// Decodes an instance record and checks it against its key, as the runtime's registry does; null with the reason
    /// when it is not one (the caller warns, naming the key, and goes on).
    /// </summary>
    public static InstanceRecord? TryDecode(string key, ReadOnlySpan<byte> value, out string? problem)
    {
        problem = null;
        var slash = key.LastIndexOf('/');
        if (!ulong.TryParse(key.AsSpan(slash + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var idFromKey))
        {
            problem = "the last key segment is not a hexadecimal instance id";
            return null;
        }

        try
        {
            var record = JsonSerializer.Deserialize(value, CliJsonContext.Default.InstanceRecord);
            if (record is null)
            {
                problem = "the value is JSON null";
                return null;
            }

            if (record.InstanceId != idFromKey)
            {
                problem = $"the record's instance_id {record.InstanceId:x} does not match the key";
                return null;
            }

            if (string.IsNullOrWhiteSpace(record.Address) || string.IsNullOrWhiteSpace(record.Transport))
            {
                problem = "the record has no address or transport";
                return null;
            }

            // Records of older servers may carry JSON nulls where newer ones have empty collections.
            return record with { Tags = record.Tags ?? InstanceTags.None, Alternates = record.Alternates ?? [], Metadata = record.Metadata ?? InstanceTags.None };
        }
        catch (JsonException ex)
        {
            problem = ex.Message;
            return null;
        }
    }

    /// <summary>Lists the valid records under an endpoint prefix, warning about invalid entries on stderr.</summary>
    public static async Task<IReadOnlyList<(KeyValueEntry Entry, InstanceRecord Record)>> ListAsync(StoreConnection connection, string endpointPrefix, CancellationToken cancellationToken)
    {
        var entries = await connection.Store.ListAsync(KeyPrefix(endpointPrefix), cancellationToken).ConfigureAwait(false);
        var list = new List<(KeyValueEntry, InstanceRecord)>(entries.Count);
        foreach (var e in entries)
        {
            if (TryDecode(e.Key, e.Value.Span, out var problem) is { } record)
            {
                list.Add((e, record));
            }
            else
            {
                WarnInvalid(connection, e.Key, problem);
            }
        }

        return list;
    }

    /// <summary>One stderr line about an entry that is not an instance record.</summary>
    public static void WarnInvalid(StoreConnection connection, string key, string? problem)
    {
        var location = connection.Store.DescribeLocation(key);
        var where = location == key ? connection.Description : location;
        Console.Error.WriteLine($"warning: skipping '{key}' ({where}): not a valid instance record ({problem})");
    }
}

[JsonSerializable(typeof(InstanceRecord))]
internal sealed partial class CliJsonContext : JsonSerializerContext;
