import Foundation
import Primitives

/// Group commit at work over a run's measured window: how often the replicas synced, how many
/// records and commands each sync carried, and what a sync cost on this machine.
public struct StorageSummary: Hashable, Sendable {
    public var mode: DurabilityMode
    public var syncs: UInt64
    public var recordsSynced: UInt64
    public var seconds: Double
    public var replicas: Int
    /// Sync latency from the logs' log2 buckets: upper bounds, within a factor of two.
    public var syncMicrosecondsP50: Double
    public var syncMicrosecondsP99: Double
    public var syncMicrosecondsMean: Double

    public init(mode: DurabilityMode, syncs: UInt64, recordsSynced: UInt64, seconds: Double, replicas: Int,
                syncMicrosecondsP50: Double, syncMicrosecondsP99: Double, syncMicrosecondsMean: Double) {
        self.mode = mode
        self.syncs = syncs
        self.recordsSynced = recordsSynced
        self.seconds = seconds
        self.replicas = replicas
        self.syncMicrosecondsP50 = syncMicrosecondsP50
        self.syncMicrosecondsP99 = syncMicrosecondsP99
        self.syncMicrosecondsMean = syncMicrosecondsMean
    }

    public var syncsPerSecond: Double { seconds > 0 ? Double(syncs) / seconds : 0 }

    /// Commands made durable per sync: every replica logs every command once, so the commands
    /// completed in the window times the replicas, over the syncs.
    public func commandsPerSync(completedPerSecond: Double) -> Double {
        syncs == 0 ? 0 : completedPerSecond * seconds * Double(replicas) / Double(syncs)
    }

    public static let header = "durability,syncs,syncs_per_s,records_per_sync,commands_per_sync,sync_mean_us,sync_p50_us,sync_p99_us"

    public func csv(completedPerSecond: Double) -> String {
        [mode.rawValue, "\(syncs)", String(format: "%.1f", syncsPerSecond),
         String(format: "%.2f", syncs == 0 ? 0 : Double(recordsSynced) / Double(syncs)),
         String(format: "%.2f", commandsPerSync(completedPerSecond: completedPerSecond)),
         String(format: "%.1f", syncMicrosecondsMean), String(format: "%.1f", syncMicrosecondsP50), String(format: "%.1f", syncMicrosecondsP99)]
            .joined(separator: ",")
    }
}
