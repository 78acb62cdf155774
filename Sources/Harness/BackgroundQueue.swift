import CProcessShims
import DequeModule
import Foundation
import NIOConcurrencyHelpers
import Runtime

/// One thread, at the lowest scheduling priority, that runs closures one at a time in the order
/// they were handed in: for work a replica's loop must not wait for and must not compete with,
/// such as encoding a checkpoint (tens of milliseconds of CPU for a large store).
///
/// On two cores, three in-process replicas each encoding on a default-priority dispatch thread
/// took CPU from the event loop for as long as they ran: the p99 of an open-loop run rose from
/// under 1 ms to 13–25 ms in every second with a checkpoint. At nice 19 the encoder only gets
/// what the loops leave idle.
public final class BackgroundQueue: @unchecked Sendable {
    // `pending` is only touched under `condition`; the thread is started once in `init`.
    private let condition = NSCondition()
    private var pending = Deque<@Sendable () -> Void>()

    /// The process's queue for checkpoint encoding.
    public static let checkpoints = BackgroundQueue(name: "csmr-checkpoints")

    public init(name: String) {
        let thread = Thread { [self] in
            _ = csmr_lower_thread_priority()
            while true {
                condition.lock()
                while pending.isEmpty { condition.wait() }
                let work = pending.removeFirst()
                condition.unlock()
                work()
            }
        }
        thread.name = name
        thread.start()
    }

    public func async(_ work: @escaping @Sendable () -> Void) {
        condition.lock()
        pending.append(work)
        condition.signal()
        condition.unlock()
    }
}

extension BackgroundQueue {
    /// Encodes `pending` on this queue and hands the bytes to `done`, on this queue's thread.
    /// Handed over, not copied: the encoding thread must hold the state's copy alone
    /// (`PendingCheckpoint.encode`), so the value travels in a box the encoding thread empties.
    public func encode(_ pending: consuming PendingCheckpoint, then done: @escaping @Sendable (EncodedCheckpoint) -> Void) {
        let handoff = NIOLockedValueBox<PendingCheckpoint?>(pending)
        async {
            guard var pending = handoff.withLockedValue({ $0.take() }) else { return }
            done(pending.encode())
        }
    }
}
