namespace RequestMigration.Discovery.Instances;

/// <summary>Names an endpoint: <c>{namespace}/{component}/{endpoint}</c>, e.g. <c>demo/backend/generate</c>.</summary>
public readonly record struct EndpointId
{
    /// <summary>Creates an id; each part must be non-empty and contain no '/'.</summary>
    public EndpointId(string @namespace, string component, string endpoint)
    {
        Namespace = Check(@namespace, nameof(@namespace));
        Component = Check(component, nameof(component));
        Endpoint = Check(endpoint, nameof(endpoint));
        Path = $"{Namespace}/{Component}/{Endpoint}";
    }

    /// <summary>The namespace.</summary>
    public string Namespace { get; }

    /// <summary>The component, e.g. <c>backend</c>.</summary>
    public string Component { get; }

    /// <summary>The endpoint, e.g. <c>generate</c>.</summary>
    public string Endpoint { get; }

    /// <summary><c>{namespace}/{component}/{endpoint}</c>.</summary>
    public string Path { get; }

    /// <summary>Parses <c>ns/component/endpoint</c>.</summary>
    /// <exception cref="FormatException">Not three non-empty parts.</exception>
    public static EndpointId Parse(string path)
    {
        if (!TryParse(path, out var id))
        {
            throw new FormatException($"endpoint path '{path}' is not of the form namespace/component/endpoint");
        }

        return id;
    }

    /// <summary>Parses <c>ns/component/endpoint</c> without throwing.</summary>
    public static bool TryParse(string? path, out EndpointId id)
    {
        id = default;
        if (string.IsNullOrEmpty(path))
        {
            return false;
        }

        var parts = path.Split('/');
        if (parts.Length != 3 || Array.Exists(parts, p => p.Length == 0))
        {
            return false;
        }

        id = new EndpointId(parts[0], parts[1], parts[2]);
        return true;
    }

    /// <inheritdoc />
    public override string ToString() => Path ?? string.Empty;

    private static string Check(string part, string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(part, name);
        if (part.Contains('/'))
        {
            throw new ArgumentException($"'{part}' must not contain '/'", name);
        }

        return part;
    }
}
