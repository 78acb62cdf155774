import Primitives
import Storage
import Workload

extension StorageSummary {
    /// The difference between two readings of the counters (start and end of the window).
    public init(mode: DurabilityMode, start: WALStats, end: WALStats, seconds: Double, replicas: Int) {
        let syncs = end.syncs - start.syncs
        var window = WALStats()
        window.syncs = syncs
        window.syncNanosecondsMax = end.syncNanosecondsMax
        window.syncLatencyBuckets = zip(end.syncLatencyBuckets, start.syncLatencyBuckets).map { $0 - $1 }
        self.init(mode: mode, syncs: syncs, recordsSynced: end.recordsSynced - start.recordsSynced, seconds: seconds, replicas: replicas,
                  syncMicrosecondsP50: Double(window.syncNanoseconds(quantile: 0.5)) / 1_000,
                  syncMicrosecondsP99: Double(window.syncNanoseconds(quantile: 0.99)) / 1_000,
                  syncMicrosecondsMean: syncs == 0 ? 0 : Double(end.syncNanosecondsTotal - start.syncNanosecondsTotal) / Double(syncs) / 1_000)
    }

}
