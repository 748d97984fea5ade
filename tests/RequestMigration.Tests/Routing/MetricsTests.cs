using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using RequestMigration.Diagnostics;
using RequestMigration.Serving;
using RequestMigration.Tests.Infrastructure;
using RequestMigration.Tests.Transport;
using RequestMigration.Transport;
using Shouldly;
using Xunit;

namespace RequestMigration.Tests.Routing;

public sealed class MetricsTests : IAsyncLifetime
{
    private readonly TestCluster _cluster = new(TransportKind.Tcp);

    public ValueTask InitializeAsync() => ValueTask.CompletedTask;

    public ValueTask DisposeAsync() => _cluster.DisposeAsync();

    [Fact]
    public async Task Router_counts_attempts_failovers_and_inhibits_per_endpoint()
    {
        var endpoint = $"metrics{Guid.NewGuid():N}"[..20] + "/backend/generate";
        var totals = new ConcurrentDictionary<string, long>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == RuntimeMetrics.MeterName)
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "endpoint" && (string?)tag.Value == endpoint)
                {
                    totals.AddOrUpdate(instrument.Name, value, (_, v) => v + value);
                }
            }
        });
        listener.Start();

        await _cluster.StartServerAsync<string, string>((_, _) => Cut(), endpoint);
        await _cluster.StartServerAsync<string, string>((_, _) => Fine(), endpoint);
        var router = await _cluster.RouterAsync<string, string>(2, endpoint: endpoint);

        // Round robin starts anywhere: repeat until one request has failed over.
        for (var i = 0; i < 4 && totals.GetValueOrDefault("rm.router.failovers") == 0; i++)
        {
            router.Instances.Reconcile();
            await TransportConformanceTests.Collect(router.GenerateAsync("x", TestContext.Current.CancellationToken));
        }

        totals.GetValueOrDefault("rm.router.failovers").ShouldBe(1);
        totals.GetValueOrDefault("rm.router.inhibited").ShouldBe(1);
        totals.GetValueOrDefault("rm.router.attempts").ShouldBeGreaterThanOrEqualTo(2);
    }

#pragma warning disable CS1998
    private static async IAsyncEnumerable<string> Cut()
    {
        yield return "a";
        throw new AbortStreamException();
    }

    private static async IAsyncEnumerable<string> Fine()
    {
        yield return "b";
    }
#pragma warning restore CS1998
}
