using System.Globalization;

namespace RequestMigration.Discovery.Instances;

/// <summary>The key layout of instance records.</summary>
public static class InstanceKeys
{
    /// <summary>The bucket every instance record lives in.</summary>
    public const string Bucket = "v1/instances";

    /// <summary>The prefix of every instance of one endpoint (ends with '/').</summary>
    public static string Prefix(EndpointId endpoint) => $"{Bucket}/{endpoint.Path}/";

    /// <summary><c>v1/instances/{ns}/{component}/{endpoint}/{instance_id:x}</c>.</summary>
    public static string Key(EndpointId endpoint, ulong instanceId) => $"{Bucket}/{endpoint.Path}/{instanceId:x}";

    /// <summary>Reads the instance id from the last segment of a key.</summary>
    public static bool TryParseInstanceId(string key, out ulong instanceId)
    {
        var slash = key.LastIndexOf('/');
        return ulong.TryParse(key.AsSpan(slash + 1), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out instanceId);
    }
}
