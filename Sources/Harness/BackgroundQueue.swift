import CProcessShims
import DequeModule
import Foundation

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
