namespace RequestMigration.Discovery;

internal static class KeyValidation
{
    public static void ThrowIfInvalid(string key)
    {
        ArgumentException.ThrowIfNullOrEmpty(key);
        if (key.StartsWith('/') || key.EndsWith('/') || key.Contains("//", StringComparison.Ordinal))
        {
            throw new ArgumentException($"key '{key}' must not start or end with '/' or contain an empty segment", nameof(key));
        }
    }
}
