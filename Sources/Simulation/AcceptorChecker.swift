import Paxos
import Primitives

/// Watches what each acceptor of a group tells its peers, and checks the two promises an
/// acceptor makes with every promise and acknowledgement, across its crashes:
///
/// - It never answers a ballot below one it already promised or accepted in that sublog (a
///   complete promise or an acknowledgement at a lower ballot breaks phase 1's guarantee, whether
///   the promise was forgotten in a crash or never enforced).
/// - What it revealed survives its crash: after a restart, its recovered acceptor state holds a
///   promise at least as high as every ballot it answered, and every slot it acknowledged at or
///   above its recovered checkpoint at a ballot at least as high. A promise or an acceptance that
///   left before its record was durable, or was never written, shows here at the first crash
///   that loses it, long before two lost records add up to a disagreement the other checkers see.
///
/// It reads only messages that left a replica (released by the effect gate) and the state a
/// restarted replica recovered, never the replica's memory while it runs.
struct AcceptorChecker {
    private let sublogCount: Int
    /// Per replica and sublog, the highest ballot it answered (complete promise or acknowledgement).
    private var answered: [[Ballot?]]
    /// Per replica, the slots it acknowledged (by the first slot of the run) and the ballot.
    private var acknowledged: [[UInt64: Ballot]]
    private(set) var violations: [String] = []
    private static let violationsMax = 5

    init(replicaCount: Int, sublogCount: Int) {
        self.sublogCount = sublogCount
        answered = Array(repeating: Array(repeating: nil, count: sublogCount), count: replicaCount)
        acknowledged = Array(repeating: [:], count: replicaCount)
    }

    /// A message left `replica`.
    mutating func sent(_ message: PaxosMessage, by replica: Int) {
        switch message {
        case let .promise(sublog, ballot, _, _, complete):
            // An incomplete promise sends its leader away (to catch up) and counts for nothing,
            // so the acceptor does not record it.
            guard complete, sublog >= 0, sublog < sublogCount else { return }
            answer(ballot, sublog: sublog, by: replica, what: "promised")
        case let .accepted(ballot, first, _):
            answer(ballot, sublog: Int(first % UInt64(sublogCount)), by: replica, what: "acknowledged slot \(first) at")
            if acknowledged[replica][first].map({ ballot > $0 }) ?? true {
                acknowledged[replica][first] = ballot
            }
        case .prepare, .accept, .rejected, .decided, .heartbeat, .heartbeatEcho, .catchUp, .undecided, .compacted, .forward, .checkpointRequest, .checkpointChunk:
            break
        }
    }

    private mutating func answer(_ ballot: Ballot, sublog: Int, by replica: Int, what: String) {
        if let floor = answered[replica][sublog], ballot < floor {
            report("r\(replica) \(what) ballot \(ballot) in sublog \(sublog) after answering \(floor) there")
        }
        if answered[replica][sublog].map({ ballot > $0 }) ?? true { answered[replica][sublog] = ballot }
    }

    /// `replica` restarted from its disk: `acceptor` is the acceptor state it recovered (its
    /// promises and the slots it holds at or above `checkpointSlot`).
    mutating func restarted(_ replica: Int, acceptor: [PersistRecord], checkpointSlot: UInt64) {
        var promised: [Ballot?] = Array(repeating: nil, count: sublogCount)
        var slots: [UInt64: Ballot] = [:]
        for record in acceptor {
            switch record {
            case let .promised(sublog, ballot):
                guard sublog >= 0, sublog < sublogCount else { continue }
                promised[sublog] = max(promised[sublog] ?? ballot, ballot)
            case let .accepted(ballot, run):
                let sublog = Int(run.first % UInt64(sublogCount))
                promised[sublog] = max(promised[sublog] ?? ballot, ballot)
                slots[run.first] = max(slots[run.first] ?? ballot, ballot)
            }
        }
        for sublog in 0..<sublogCount {
            guard let floor = answered[replica][sublog] else { continue }
            if promised[sublog].map({ $0 < floor }) ?? true {
                report("r\(replica) restarted promising \(promised[sublog].map { "\($0)" } ?? "nothing") in sublog \(sublog), but answered \(floor) before its crash (a promise or acceptance left that its disk did not keep)")
            }
        }
        for (slot, ballot) in acknowledged[replica].sorted(by: { $0.key < $1.key }) where slot >= checkpointSlot {
            if slots[slot].map({ $0 < ballot }) ?? true {
                report("r\(replica) restarted without its acceptance of slot \(slot) at \(ballot) (\(slots[slot].map { "it holds \($0)" } ?? "no record")), acknowledged before its crash")
                break
            }
        }
        acknowledged[replica] = acknowledged[replica].filter { $0.key >= checkpointSlot }
    }

    private mutating func report(_ violation: String) {
        if violations.count < Self.violationsMax { violations.append("durability: " + violation) }
    }
}
