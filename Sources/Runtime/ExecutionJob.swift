import Execution
import Paxos
import Primitives
import Services

/// What one input of a replica asks of its executor: a state to put in place first (a
/// checkpoint received by state transfer), the slots it delivered, in slot order, and whether to
/// copy the state after them (a checkpoint claimed at the slot that follows them).
struct ExecutionWork: Sendable {
    var restore: StateMachine?
    var deliveries: [Delivery] = []
    /// When the deliveries were made (the input that delivered them): the start of a sampled
    /// request's execution stage, which includes the wait for the executor.
    var deliveredAt: Instant?
    var snapshot = false

    var isEmpty: Bool { restore == nil && deliveries.isEmpty && !snapshot }
}

/// What the executor made of an `ExecutionWork`.
struct ExecutionDone: Sendable {
    /// Per delivery, in order: its requests' replies and executed flags (nil for a slot without
    /// requests: a no-op or a skip).
    var results: [ExecutionResult?] = []
    /// State digests after the slots that end a digest interval.
    var digests: [(slot: UInt64, digest: Digest)] = []
    /// The state after the deliveries, when the work asked for it.
    var snapshot: StateMachine?
}

extension Executor {
    /// Carries out `work` in order: restore, execute each delivered batch, digest, copy.
    mutating func perform(_ work: ExecutionWork, digestIntervalSlots: UInt64) -> ExecutionDone {
        var done = ExecutionDone()
        if let machine = work.restore { restore(machine) }
        done.results.reserveCapacity(work.deliveries.count)
        for delivery in work.deliveries {
            if case let .batch(requests) = delivery.value {
                done.results.append(execute(requests))
            } else {
                done.results.append(nil)
            }
            if digestIntervalSlots > 0, (delivery.slot + 1) % digestIntervalSlots == 0 {
                done.digests.append((delivery.slot, stateMachine.digest))
            }
        }
        // A copy of a sequential machine costs nothing now (its tables are shared until the next
        // write); a parallel executor assembles its partitions into one.
        if work.snapshot { done.snapshot = stateMachine }
        return done
    }
}

/// Delivered slots for a parallel executor to run off the replica's loop (`ReplicaNode` hands
/// them out when `executesInline` is false).
///
/// A driver runs the jobs of one node one at a time, in the order they were handed out —
/// `runOnLane` does that on the executor's own thread; a simulator may call `run()` itself, as a
/// scheduled event — and hands each outcome back, in the same order, through
/// `ReplicaNode.executed(_:now:)` on the replica's loop.
public struct ExecutionJob: Sendable {
    /// Jobs of one node are numbered from 0 in the order they were handed out.
    public let number: UInt64
    let executor: ParallelExecutor
    let work: ExecutionWork
    let digestIntervalSlots: UInt64

    /// Executes the job on the calling thread. Not while another job of the same node runs.
    public func run() -> ExecutionOutcome {
        var parallel = Executor.parallel(executor)
        return ExecutionOutcome(number: number, executor: ObjectIdentifier(executor),
                                done: parallel.perform(work, digestIntervalSlots: digestIntervalSlots))
    }

    /// Executes the job on the executor's lane after every job handed to it before; `then` is
    /// called there with the outcome.
    public func runOnLane(then: @escaping @Sendable (ExecutionOutcome) -> Void) {
        executor.submit { then(run()) }
    }

    /// How many slots the job executes.
    public var slotCount: Int { work.deliveries.count }
}

/// A job's result, for `ReplicaNode.executed(_:now:)`.
public struct ExecutionOutcome: Sendable {
    public let number: UInt64
    /// Which executor ran it: a node ignores outcomes of another (its previous incarnation's).
    let executor: ObjectIdentifier
    let done: ExecutionDone
}

/// A checkpoint claimed when the core had delivered every slot below `slot`: its acceptor state
/// and storage position are taken then; the state machine once execution has caught up.
struct CheckpointClaim: Sendable {
    var slot: UInt64
    var position: UInt64
    var acceptor: [PersistRecord]
    /// Encode within the input that completes it, whatever `encodesCheckpointsInline` says.
    var encodeInline: Bool
}

/// A job handed out and not yet completed.
struct InFlightJob: Sendable {
    var number: UInt64
    var work: ExecutionWork
    var claim: CheckpointClaim?
    /// The storage position the input that delivered its slots must have durable.
    var durableAfter: UInt64 = 0
    /// A state transfer replaced the state meanwhile: its results are moot.
    var superseded = false
}
