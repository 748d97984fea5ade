using System.Runtime.InteropServices;
using System.Runtime.Versioning;

namespace RequestMigration.Discovery.File;

/// <summary>
/// Makes sure a directory in a place every user can write (the system temp directory) belongs to the current
/// user and only to them. Whoever creates <c>/tmp/dynamo_store_kv</c> first owns it, and its owner can forge,
/// rewrite or delete the instance records every router reads; so the store must not use one it does not own.
/// </summary>
internal static class PrivateDirectory
{
    private const UnixFileMode OwnerOnly = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

    /// <summary>Creates <paramref name="path"/> with mode 0700, or checks that the existing one is ours and makes it 0700.</summary>
    /// <exception cref="UnauthorizedAccessException">The directory (or a link at its path) belongs to another user; the message says to set <c>DYN_FILE_KV</c>.</exception>
    public static void Ensure(string path)
    {
        if (OperatingSystem.IsWindows())
        {
            // The per-user temp directory on Windows is private already.
            Directory.CreateDirectory(path);
            return;
        }

        EnsureUnix(path);
    }

    [UnsupportedOSPlatform("windows")]
    private static void EnsureUnix(string path)
    {
        // A no-op if it exists: then whoever made it decides its mode, and the checks below apply.
        Directory.CreateDirectory(path, OwnerOnly);
        if (Owners.Read(path) is { } owners)
        {
            var me = Owners.Effective();
            if (owners.LinkOwner != me || owners.TargetOwner != me)
            {
                throw Foreign(path, owners.LinkOwner != me ? owners.LinkOwner : owners.TargetOwner, me);
            }
        }

        try
        {
            // Only the owner may change the mode, so where the owner could not be read this doubles as the check.
            if (System.IO.File.GetUnixFileMode(path) != OwnerOnly)
            {
                System.IO.File.SetUnixFileMode(path, OwnerOnly);
            }
        }
        catch (UnauthorizedAccessException ex)
        {
            throw Foreign(path, null, null, ex);
        }
    }

    private static UnauthorizedAccessException Foreign(string path, uint? owner, uint? me, Exception? inner = null) =>
        new(
            $"file store: the default directory '{path}' belongs to another user"
            + (owner is { } o && me is { } m ? $" (uid {o}; this process runs as uid {m})" : string.Empty)
            + ", who could forge or remove the instance records kept there; set DYN_FILE_KV to a directory of your own"
            + " (every process of a deployment must use the same one)",
            inner);

    /// <summary>Owner ids read with Linux's <c>statx</c>, whose buffer layout is the same on every architecture.</summary>
    private static class Owners
    {
        private const int AtFdCwd = -100;
        private const int AtSymlinkNoFollow = 0x100;
        private const uint StatxUid = 0x8;
        private const int StatxBufferSize = 256;
        private const int UidOffset = 20;

        /// <summary>Owner of the path itself (a link, if it is one) and of what it leads to; null where <c>statx</c> is unavailable.</summary>
        public static (uint LinkOwner, uint TargetOwner)? Read(string path)
        {
            if (!OperatingSystem.IsLinux())
            {
                return null;
            }

            try
            {
                var link = Uid(path, AtSymlinkNoFollow);
                var target = Uid(path, 0);
                return link is { } l && target is { } t ? (l, t) : null;
            }
            catch (Exception ex) when (ex is EntryPointNotFoundException or DllNotFoundException)
            {
                // An old C library without statx: the mode change in the caller still refuses a foreign directory.
                return null;
            }
        }

        public static uint Effective() => NativeMethods.geteuid();

        private static uint? Uid(string path, int flags)
        {
            var buffer = new byte[StatxBufferSize];
            return NativeMethods.statx(AtFdCwd, path, flags, StatxUid, buffer) == 0
                ? BitConverter.ToUInt32(buffer, UidOffset)
                : null;
        }
    }

    private static class NativeMethods
    {
        [DllImport("libc", SetLastError = true)]
        public static extern int statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string pathname, int flags, uint mask, [Out] byte[] statxbuf);

        [DllImport("libc")]
        public static extern uint geteuid();
    }
}
