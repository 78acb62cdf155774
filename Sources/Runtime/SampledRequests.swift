import Paxos
import Primitives
import Services

/// Stage timestamps of sampled requests at one replica, on the instants its driver hands in (the
/// latency breakdown). Kept apart from the node's logic: the node tells it what happened and when,
/// and it hands back the durations for the reply.
///
/// Cheap when nothing is sampled: every hook returns at once on an empty table. Bounded: at most
/// `requestsMax` requests are tracked at once; a sample beyond that is not taken.
struct SampledRequests: Sendable {
    static let requestsMax = 4_096

    private typealias Key = RequestKey

    private struct Stamps: Sendable {
        var received: Instant
        var proposed: Instant?
    }

    private var stamps: [Key: Stamps] = [:]

    var isEmpty: Bool { stamps.isEmpty }

    mutating func received(_ request: Request, at now: Instant) {
        guard stamps.count < Self.requestsMax, stamps[Key(request)] == nil else { return }
        stamps[Key(request)] = Stamps(received: now)
    }

    /// A proposal this replica sends or receives: its sampled requests are proposed now.
    mutating func observe(_ message: PaxosMessage, at now: Instant) {
        guard !stamps.isEmpty, case let .accept(_, run) = message, case let .batch(requests) = run.value else { return }
        for request in requests where stamps[Key(request)]?.proposed == nil {
            stamps[Key(request)]?.proposed = now
        }
    }

    mutating func forget(_ request: Request) {
        guard !stamps.isEmpty else { return }
        stamps[Key(request)] = nil
    }

    /// The request was delivered at `delivered` and its reply was ready at `ready`. A request
    /// decided without this replica seeing its proposal (learned from a decision) counts as
    /// proposed when delivered.
    mutating func executed(_ request: Request, delivered: Instant, ready: Instant) -> ReplicaStages? {
        guard !stamps.isEmpty, let stamp = stamps.removeValue(forKey: Key(request)) else { return nil }
        let proposed = min(stamp.proposed ?? delivered, delivered)
        return ReplicaStages(queueNanoseconds: proposed.nanoseconds &- min(stamp.received.nanoseconds, proposed.nanoseconds),
                             orderingNanoseconds: delivered.nanoseconds - proposed.nanoseconds,
                             executionNanoseconds: ready.nanoseconds &- min(delivered.nanoseconds, ready.nanoseconds),
                             readyAtNanoseconds: ready.nanoseconds)
    }
}
