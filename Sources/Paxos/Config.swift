import Primitives

/// Which replicas lead which slots.
public enum LeadershipMode: String, Hashable, Sendable, CaseIterable {
    /// Every replica leads its own slots (slot s belongs to replica s mod n), Mencius-style.
    case multiLeader = "multi-leader"
    /// One replica leads every slot; another takes over with a higher ballot when it fails.
    case singleLeader = "single-leader"
}

/// Why a configuration was refused at start-up.
public struct ConfigError: Error, Hashable, Sendable, CustomStringConvertible {
    public var field: String
    public var problem: String
    public var description: String { "\(field): \(problem)" }
}

/// The clock a group runs on. Timeouts that suit simulated time (no scheduling noise) would
/// suspect busy peers on a loaded machine, so each driver picks its profile, never its own numbers.
public enum ClockProfile: Hashable, Sendable {
    /// Wall-clock time on real event loops (in process or across processes).
    case realTime
    /// The simulator's virtual time: short timeouts so faults resolve within a seed's budget, and a
    /// small delivery window so seeds exercise the window's bound.
    case simulated
}

/// Every bound of the consensus core. Times are in microseconds of the driver's clock.
public struct PaxosConfig: Hashable, Sendable {
    /// Replicas in the group, n = 2f + 1. 3, 5 and 7 are tested; at least 1 and odd.
    public var replicaCount: Int
    public var mode: LeadershipMode
    /// Requests in one batch (one slot). 1 disables batching; recommended 64; 1 ... 65,536.
    public var batchCommandsMax: Int = 64
    /// Encoded bytes of the requests of one batch (approximate: key, value and entry sizes plus a
    /// fixed overhead per request). Recommended 1 MiB; at least 1 KiB.
    public var batchBytesMax: Int = 1 << 20
    /// How long a non-full batch may wait for more requests. 0 sends whenever the pipeline has room.
    public var batchDelayMicrosecondsMax: UInt64 = 0
    /// Batches a leader keeps in flight (proposed, not yet decided). Recommended 8 ... 64; at least 1.
    public var pipelineDepthMax: Int = 16
    /// Adaptive batching: while at least this many of a leader's batches are in flight, a batch
    /// that is not full waits for more requests (at most `batchHoldMicrosecondsMax`) instead of
    /// leaving at once; a decision frees the pipeline and lets it go. A loaded leader thus cuts
    /// fuller batches, paying fewer messages per request, while a lightly loaded one, with less in
    /// flight, still sends at once. `pipelineDepthMax` or more turns holding off (a full pipeline
    /// waits anyway); at least 1. The default depends on the mode (`defaultBatchHoldInflightMin`).
    public var batchHoldInflightMin: Int = 2
    /// The longest adaptive batching holds a request back. Recommended 1,000 µs in process (a few
    /// round trips); 0 turns holding off; below `suspectTimeoutMicroseconds`.
    public var batchHoldMicrosecondsMax: UInt64 = 1_000
    /// Multi-leader: how far ahead an owner skips its unused slots, as a percentage of the slots
    /// the group opens during one one-way delay to this replica's nearest live peer (batch rates and
    /// round trips are measured as the group runs). An owner far from the others then closes its
    /// slots before their batches need them, instead of a round trip after they are proposed.
    /// 0 turns skipping ahead off (owners skip only when they learn of a higher batch). 0 ... 1,000;
    /// recommended 100.
    public var skipAheadPercent: Int = 100
    /// Requests waiting to be batched at one replica; more are dropped (clients time out and retry).
    public var requestQueueMax: Int = 100_000
    /// No slot is proposed this far beyond the first undelivered slot: bounds decided but
    /// undeliverable state while a slot is stuck. At least pipelineDepthMax × replicaCount.
    public var deliveryWindowSlotsMax: UInt64 = 8_192
    /// Heartbeat period. Recommended 10 ms in process, 50 ms across hosts.
    public var heartbeatIntervalMicroseconds: UInt64 = 10_000
    /// Silence after which a peer is suspected. At least 3 heartbeat intervals.
    public var suspectTimeoutMicroseconds: UInt64 = 60_000
    /// Unanswered accepts and prepares are resent, and a stuck delivery asks peers for decisions,
    /// after this long.
    public var retransmitTimeoutMicroseconds: UInt64 = 20_000
    /// Decided slots one catch-up reply carries.
    public var catchUpSlotsMax: Int = 512

    public init(replicaCount: Int, mode: LeadershipMode = .multiLeader) {
        self.replicaCount = replicaCount
        self.mode = mode
        batchHoldInflightMin = Self.defaultBatchHoldInflightMin(mode: mode)
    }

    /// 1 for multi-leader, 2 for single-leader. A multi-leader leader batches only the requests of
    /// its own clients, a third of a group of three's, so its batches were a third as full as the
    /// single leader's, and a batch costs messages, records and wake-ups in every replica; holding
    /// while one batch is in flight makes them about half as full instead (measured in
    /// BENCHMARKS.md: fewer messages per request, higher throughput over TCP and in process, and a
    /// lower open-loop p50). The single leader, which batches every client, fills its batches at 2.
    public static func defaultBatchHoldInflightMin(mode: LeadershipMode) -> Int { mode == .multiLeader ? 1 : 2 }

    public var quorum: Int { replicaCount / 2 + 1 }

    /// Sublogs: one per replica in multi-leader mode, one in single-leader mode.
    public var sublogCount: Int { mode == .multiLeader ? replicaCount : 1 }

    /// Checks every bound alone and against the others.
    public func validate() throws(ConfigError) {
        func fail(_ field: String, _ problem: String) -> ConfigError { ConfigError(field: field, problem: problem) }
        guard replicaCount >= 1, replicaCount % 2 == 1, replicaCount <= 99 else {
            throw fail("replicas", "must be odd (n = 2f + 1) and between 1 and 99, got \(replicaCount)")
        }
        guard (1...65_536).contains(batchCommandsMax) else { throw fail("batchCommandsMax", "must be 1 ... 65536, got \(batchCommandsMax)") }
        guard batchBytesMax >= 1_024 else { throw fail("batchBytesMax", "must be at least 1024, got \(batchBytesMax)") }
        guard pipelineDepthMax >= 1 else { throw fail("pipelineDepthMax", "must be at least 1, got \(pipelineDepthMax)") }
        guard batchHoldInflightMin >= 1 else { throw fail("batchHoldInflightMin", "must be at least 1, got \(batchHoldInflightMin)") }
        guard requestQueueMax >= batchCommandsMax else {
            throw fail("requestQueueMax", "\(requestQueueMax) is smaller than batchCommandsMax \(batchCommandsMax)")
        }
        guard deliveryWindowSlotsMax >= UInt64(pipelineDepthMax * replicaCount) else {
            throw fail("deliveryWindowSlotsMax", "\(deliveryWindowSlotsMax) is below pipelineDepthMax × replicas = \(pipelineDepthMax * replicaCount)")
        }
        guard heartbeatIntervalMicroseconds >= 1 else { throw fail("heartbeatIntervalMicroseconds", "must be positive") }
        guard suspectTimeoutMicroseconds >= 3 * heartbeatIntervalMicroseconds else {
            throw fail("suspectTimeoutMicroseconds", "\(suspectTimeoutMicroseconds) is below 3 heartbeat intervals (\(3 * heartbeatIntervalMicroseconds))")
        }
        guard retransmitTimeoutMicroseconds >= 1 else { throw fail("retransmitTimeoutMicroseconds", "must be positive") }
        guard batchDelayMicrosecondsMax < suspectTimeoutMicroseconds else {
            throw fail("batchDelayMicrosecondsMax", "\(batchDelayMicrosecondsMax) must be below suspectTimeoutMicroseconds \(suspectTimeoutMicroseconds)")
        }
        guard batchHoldMicrosecondsMax < suspectTimeoutMicroseconds else {
            throw fail("batchHoldMicrosecondsMax", "\(batchHoldMicrosecondsMax) must be below suspectTimeoutMicroseconds \(suspectTimeoutMicroseconds)")
        }
        guard (0...1_000).contains(skipAheadPercent) else {
            throw fail("skipAheadPercent", "must be 0 ... 1000, got \(skipAheadPercent)")
        }
        guard catchUpSlotsMax >= 1 else { throw fail("catchUpSlotsMax", "must be at least 1") }
    }
}

extension PaxosConfig {
    /// The one set of presets every driver starts from (the CLI's runs, compositions, cluster
    /// files and the simulator), so the same group gets the same bounds whichever way it is run.
    public static func preset(replicaCount: Int, mode: LeadershipMode, batchCommandsMax: Int = 64, pipelineDepthMax: Int = 16,
                              clock: ClockProfile) -> PaxosConfig {
        var config = PaxosConfig(replicaCount: replicaCount, mode: mode)
        config.batchCommandsMax = batchCommandsMax
        config.pipelineDepthMax = pipelineDepthMax
        config.requestQueueMax = max(config.requestQueueMax, batchCommandsMax)
        // The window must hold every leader's full pipeline (validate() demands it).
        let pipelinesSlots = UInt64(pipelineDepthMax * replicaCount * 4)
        switch clock {
        case .realTime:
            config.deliveryWindowSlotsMax = max(config.deliveryWindowSlotsMax, pipelinesSlots)
            // A shared 2-core machine stalls a loop for tens of milliseconds: be patient before
            // suspecting a busy peer.
            config.heartbeatIntervalMicroseconds = 20_000
            config.suspectTimeoutMicroseconds = 200_000
            config.retransmitTimeoutMicroseconds = 50_000
        case .simulated:
            config.deliveryWindowSlotsMax = max(256, pipelinesSlots)
            config.heartbeatIntervalMicroseconds = 10_000
            config.suspectTimeoutMicroseconds = 50_000
            config.retransmitTimeoutMicroseconds = 15_000
            config.catchUpSlotsMax = 256
        }
        return config
    }
}
