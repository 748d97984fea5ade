using System.Diagnostics;
using RequestMigration.Discovery;
using RequestMigration.Discovery.Instances;
using RequestMigration.Routing;
using RequestMigration.Transport;

namespace RequestMigration.Bench;

/// <summary>
/// Figure 4: how long a discovery change takes to reach a router. Register: from the call that writes an
/// instance record until <c>router.Instances.Available</c> contains it. Remove: from the call that deletes it
/// until it is gone. The writer and the router use separate store clients (as two processes would) for the
/// file and etcd stores; the mem store is one object by nature.
/// </summary>
internal static class Propagation
{
    public static async Task<Dictionary<string, PropagationFigures>> RunAsync(BenchSettings settings)
    {
        var results = new Dictionary<string, PropagationFigures>();
        Console.Error.WriteLine("  propagation: mem");
        results["mem"] = await MeasureStoreAsync(
            () =>
            {
                var store = KeyValueStoreFactory.Create(new DiscoveryOptions { Store = StoreKind.Mem });
                return (store, store);
            },
            settings.PropagationCyclesMem);

        var root = Directory.CreateTempSubdirectory("rm-bench-file-kv-").FullName;
        try
        {
            Console.Error.WriteLine("  propagation: file");
            results["file"] = await MeasureStoreAsync(
                () =>
                {
                    var options = new DiscoveryOptions { Store = StoreKind.File, File = { Root = root } };
                    return (KeyValueStoreFactory.Create(options), KeyValueStoreFactory.Create(options));
                },
                settings.PropagationCyclesFile);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }

        results["etcd"] = await MeasureEtcdAsync(settings);
        return results;
    }

    private static async Task<PropagationFigures> MeasureEtcdAsync(BenchSettings settings)
    {
        var binary = EtcdProcess.FindBinary();
        if (binary is null)
        {
            return new PropagationFigures { Available = false, Reason = "etcd is not on PATH" };
        }

        Console.Error.WriteLine($"  propagation: etcd ({binary})");
        EtcdProcess etcd;
        try
        {
            etcd = await EtcdProcess.StartAsync(binary);
        }
        catch (Exception ex)
        {
            return new PropagationFigures { Available = false, Reason = $"etcd did not start: {ex.Message}" };
        }

        await using (etcd)
        {
            try
            {
                return await MeasureStoreAsync(
                    () =>
                    {
                        var options = new DiscoveryOptions { Store = StoreKind.Etcd, Etcd = { Endpoints = [etcd.ClientUrl] } };
                        return (KeyValueStoreFactory.Create(options), KeyValueStoreFactory.Create(options));
                    },
                    settings.PropagationCyclesEtcd);
            }
            catch (NotSupportedException ex)
            {
                // The etcd store is being written concurrently; until it lands, say so instead of failing the run.
                return new PropagationFigures { Available = false, Reason = $"etcd store not implemented yet ({ex.Message})" };
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                return new PropagationFigures { Available = false, Reason = $"etcd store failed: {ex.GetType().Name}: {ex.Message}" };
            }
        }
    }

    private static async Task<PropagationFigures> MeasureStoreAsync(Func<(IKeyValueStore Writer, IKeyValueStore Reader)> open, int cycles)
    {
        var (writerStore, readerStore) = open();
        try
        {
            var endpoint = BenchEndpoint.Stream;
            await using var runtime = new RequestMigrationRuntime(OurCluster.Options(TransportKind.Tcp), store: readerStore);
            var router = runtime.CreateRouter<StreamRequest, string>(endpoint, new RouterOptions { InhibitDuration = TimeSpan.Zero });
            await router.Instances.Synced.WaitAsync(TimeSpan.FromSeconds(15));

            // The registrar is what an endpoint server uses: it owns the lease the record is bound to.
            await using var registrar = await InstanceRegistrar.StartAsync(new InstanceRegistry(writerStore), TimeSpan.FromSeconds(10));
            var record = new InstanceRecord
            {
                InstanceId = registrar.InstanceId,
                Namespace = endpoint.Namespace,
                Component = endpoint.Component,
                Endpoint = endpoint.Endpoint,
                Transport = TransportKinds.Tcp,
                Address = "127.0.0.1:1",
            };

            var register = new List<long>(cycles);
            var remove = new List<long>(cycles);
            var warmup = Math.Min(5, cycles);
            for (var i = 0; i < warmup + cycles; i++)
            {
                var t0 = Stopwatch.GetTimestamp();
                await registrar.RegisterAsync(record);
                var t1 = WaitUntil(router, record.InstanceId, present: true);
                var t2 = Stopwatch.GetTimestamp();
                await registrar.DeregisterAllAsync();
                var t3 = WaitUntil(router, record.InstanceId, present: false);
                if (i >= warmup)
                {
                    register.Add(t1 - t0);
                    remove.Add(t3 - t2);
                }
            }

            var all = register.Concat(remove).ToList();
            var figures = new PropagationFigures
            {
                Available = true,
                Cycles = cycles,
                RegisterMsP50 = Stats.PercentileMs(register, 50),
                RegisterMsP99 = Stats.PercentileMs(register, 99),
                RemoveMsP50 = Stats.PercentileMs(remove, 50),
                RemoveMsP99 = Stats.PercentileMs(remove, 99),
                PropagationMsP99 = Stats.PercentileMs(all, 99),
            };
            Console.Error.WriteLine($"    {writerStore.Name}: register p50 {figures.RegisterMsP50:0.000} p99 {figures.RegisterMsP99:0.000} ms; remove p50 {figures.RemoveMsP50:0.000} p99 {figures.RemoveMsP99:0.000} ms");
            return figures;
        }
        finally
        {
            await writerStore.DisposeAsync();
            if (!ReferenceEquals(writerStore, readerStore))
            {
                await readerStore.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// Spins (yielding the core between checks, never sleeping a whole millisecond) until the router's
    /// available set does or does not contain the instance; returns the timestamp it saw the change.
    /// </summary>
    private static long WaitUntil(PushRouter<StreamRequest, string> router, ulong instanceId, bool present)
    {
        var deadline = Stopwatch.GetTimestamp() + (15 * Stopwatch.Frequency);
        var spin = default(SpinWait);
        while (true)
        {
            if (Contains(router.Instances.Available, instanceId) == present)
            {
                return Stopwatch.GetTimestamp();
            }

            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new TimeoutException($"instance {instanceId:x} still {(present ? "absent" : "present")} after 15 s");
            }

            spin.SpinOnce(sleep1Threshold: -1);
        }
    }

    private static bool Contains(IReadOnlyList<InstanceRecord> available, ulong id)
    {
        for (var i = 0; i < available.Count; i++)
        {
            if (available[i].InstanceId == id)
            {
                return true;
            }
        }

        return false;
    }
}
