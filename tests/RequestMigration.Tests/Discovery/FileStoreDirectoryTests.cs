using System.Runtime.InteropServices;
using RequestMigration.Discovery.File;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Discovery;

/// <summary>
/// The file store's default directory lives in the shared temp directory, where any user can create it first
/// (issue 8, "Server"): it is created private to the user, and one owned by someone else is refused.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class FileStoreDirectoryTests : IDisposable
{
    private const UnixFileMode Private = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    // Stands in for the system temp directory, so the test owns everything it creates.
    private readonly string _temp = Path.Combine(Path.GetTempPath(), "rm-fsdir-" + Guid.NewGuid().ToString("N"));

    public FileStoreDirectoryTests() => Directory.CreateDirectory(_temp);

    private string DefaultRoot => Path.Combine(_temp, "dynamo_store_kv");

    public void Dispose() => Directory.Delete(_temp, recursive: true);

    [Fact]
    public async Task The_default_directory_is_created_readable_and_writable_by_its_user_only()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "Unix permissions only.");

        await using (var store = new FileKeyValueStore(Options()))
        {
            store.Root.ShouldBe(DefaultRoot);
        }

        File.GetUnixFileMode(DefaultRoot).ShouldBe(Private);
    }

    [Fact]
    public async Task A_default_directory_of_ours_left_open_by_an_older_version_is_made_private()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "Unix permissions only.");
        Directory.CreateDirectory(DefaultRoot);
        File.SetUnixFileMode(DefaultRoot, Private | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute | UnixFileMode.OtherWrite);

        await using (new FileKeyValueStore(Options()))
        {
        }

        File.GetUnixFileMode(DefaultRoot).ShouldBe(Private);
    }

    [Fact]
    public void A_default_directory_owned_by_another_user_is_refused_with_a_hint_to_set_DYN_FILE_KV()
    {
        Assert.SkipUnless(OperatingSystem.IsLinux(), "Needs Linux to create a directory owned by someone else.");
        if (geteuid() == 0)
        {
            // As root: hand the directory to "nobody".
            Directory.CreateDirectory(DefaultRoot);
            chown(DefaultRoot, 65534, 65534).ShouldBe(0, $"chown failed: errno {Marshal.GetLastPInvokeError()}");
        }
        else
        {
            // As anyone else: a link, as another user could plant, to a directory root owns.
            Directory.CreateSymbolicLink(DefaultRoot, "/");
        }

        var ex = Should.Throw<UnauthorizedAccessException>(() => new FileKeyValueStore(Options()));

        ex.Message.ShouldContain(DefaultRoot);
        ex.Message.ShouldContain("DYN_FILE_KV");
        ex.Message.ShouldContain("another user");
    }

    [Fact]
    public async Task An_explicit_directory_is_used_as_it_is()
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "Unix permissions only.");
        var shared = Path.Combine(_temp, "shared");
        Directory.CreateDirectory(shared);
        var mode = File.GetUnixFileMode(shared);

        await using (new FileKeyValueStore(new FileStoreOptions { Root = shared }))
        {
        }

        File.GetUnixFileMode(shared).ShouldBe(mode, "a directory named in DYN_FILE_KV may be shared on purpose");
    }

    private FileStoreOptions Options() => new() { TempPath = () => _temp };

    [DllImport("libc", SetLastError = true)]
    private static extern int chown([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int owner, int group);

    [DllImport("libc")]
    private static extern uint geteuid();
}
