using Xunit;

namespace RequestMigration.Tests.Infrastructure;

/// <summary>Polling for a condition that another task makes true (a server's bookkeeping after the client saw the effect).</summary>
internal static class Wait
{
    /// <summary>True as soon as <paramref name="condition"/> holds; false if it still does not after <paramref name="timeout"/>.</summary>
    public static async Task<bool> UntilAsync(Func<bool> condition, TimeSpan timeout, TimeSpan? poll = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                return false;
            }

            await Task.Delay(poll ?? TimeSpan.FromMilliseconds(10), TestContext.Current.CancellationToken);
        }

        return true;
    }
}
