using RequestMigration.Discovery;
using RequestMigration.Discovery.File;

namespace RequestMigration.Tests.Discovery;

/// <summary>
/// The file backend on a real temporary directory with the real clock: its liveness is file mtimes
/// shared between processes, which a fake clock in one process cannot move for the others.
/// </summary>
public sealed class FileStoreConformanceTests : StoreConformanceTests
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "rm-conf-" + Guid.NewGuid().ToString("N"));

    protected override TimeSpan ExpirySlack => TimeSpan.FromSeconds(2);

    protected override ValueTask<IKeyValueStore> OpenStoreAsync() =>
        ValueTask.FromResult<IKeyValueStore>(new FileKeyValueStore(new FileStoreOptions { Root = _root, Ttl = TimeSpan.FromSeconds(2), RescanInterval = TimeSpan.FromMilliseconds(200) }));

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
