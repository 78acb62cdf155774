import Foundation

/// A fixed set of threads that run one job each per round and report back.
///
/// Why threads and not Dispatch or tasks: the executor needs exactly `count` long-lived workers
/// it can address one by one (early scheduling pins conflict classes to workers), and a round
/// trip costs one condition-variable wake-up per worker, not one per command.
final class WorkerPool: @unchecked Sendable {
    // All mutable state is guarded by `condition`.
    private let condition = NSCondition()
    private var jobs: [(@Sendable () -> Void)?]
    private var remaining = 0
    private var stopping = false
    private var threads: [Thread] = []
    let count: Int

    init(count: Int) {
        precondition(count >= 1, "a worker pool needs at least one thread, got \(count)")
        self.count = count
        jobs = Array(repeating: nil, count: count)
        for index in 0..<count {
            let thread = Thread { [self] in work(index) }
            thread.name = "csmr-worker-\(index)"
            threads.append(thread)
            thread.start()
        }
    }

    /// Runs `jobs[i]` on worker i, for every worker, and returns when all have finished.
    func run(_ roundJobs: [@Sendable () -> Void]) {
        precondition(roundJobs.count == count, "\(roundJobs.count) jobs for \(count) workers")
        condition.lock()
        for index in 0..<count { jobs[index] = roundJobs[index] }
        remaining = count
        condition.broadcast()
        while remaining > 0 { condition.wait() }
        condition.unlock()
    }

    func shutdown() {
        condition.lock()
        stopping = true
        condition.broadcast()
        condition.unlock()
    }

    private func work(_ index: Int) {
        while true {
            condition.lock()
            while !stopping && jobs[index] == nil { condition.wait() }
            if stopping {
                condition.unlock()
                return
            }
            let job = jobs[index]!
            jobs[index] = nil
            condition.unlock()
            job()
            condition.lock()
            remaining -= 1
            if remaining == 0 { condition.broadcast() }
            condition.unlock()
        }
    }
}
