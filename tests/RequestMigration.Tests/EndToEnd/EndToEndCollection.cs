using Xunit;

namespace RequestMigration.Tests.EndToEnd;

/// <summary>
/// The end-to-end tests start real server and client processes; they run one at a time so they don't
/// compete for CPU with each other (timing-sensitive steps such as "SIGTERM after the first item").
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class EndToEndCollection
{
    public const string Name = "EndToEnd";
}
