using System.Collections.Concurrent;
using RequestMigration.Routing;
using RequestMigration.Tests.Transport;
using Shouldly;

namespace RequestMigration.Tests.Infrastructure;

/// <summary>
/// Consumers in closed loops, each asking a router for 5 items (0..4) until stopped: every error item or routing
/// failure is kept, and every request that ends without one must have delivered exactly 0..4.
/// </summary>
internal sealed class ConsumerLoad
{
    private readonly ConcurrentQueue<string> _errors = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task[] _consumers;
    private int _completed;

    public ConsumerLoad(PushRouter<int, int> router, int consumers, CancellationToken cancellationToken) =>
        _consumers = Enumerable.Range(0, consumers).Select(_ => Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                try
                {
                    var items = await TransportConformanceTests.Collect(router.GenerateAsync(5, cancellationToken));
                    foreach (var e in items.Where(i => i.IsError))
                    {
                        _errors.Enqueue(e.Comment!);
                    }

                    items.Where(i => !i.IsError).Select(i => i.Data).ShouldBe([0, 1, 2, 3, 4]);
                    Interlocked.Increment(ref _completed);
                }
                catch (RoutingException ex)
                {
                    _errors.Enqueue(ex.Message);
                }
            }
        })).ToArray();

    /// <summary>Error items and routing failures so far.</summary>
    public IReadOnlyCollection<string> Errors => _errors;

    /// <summary>Requests that delivered all their items.</summary>
    public int Completed => Volatile.Read(ref _completed);

    /// <summary>Lets every consumer finish its request in progress, then stops them.</summary>
    public async Task StopAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_consumers).WaitAsync(timeout, cancellationToken);
        _stop.Dispose();
    }
}
