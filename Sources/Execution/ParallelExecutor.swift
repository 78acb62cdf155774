import DequeModule
import Foundation
import Primitives
import Services

/// Executes decided requests on a pool of workers, with replies and state always equal to those
/// of sequential execution (`StateMachine.apply` in order).
///
/// How. The key-value store and the lock table are split into `partitions` conflict classes (by
/// a stable hash of the key or lock name); the log is one more class. The session table stays with
/// the calling thread: it admits a window of requests in order (`ExecutionPlan`), the admitted
/// commands run on the workers under the chosen scheduler, and the replies are then recorded in
/// the session table in order, exactly as sequential execution would have. Two commands of one
/// class never run at once and keep their order; commands of different classes touch disjoint
/// state, so the order between them cannot change any result. `openSession` ends a window (it
/// changes the session table, which admission reads).
///
/// Off the caller's thread. `submit` runs work on the executor's own lane (one thread at a time,
/// in submission order), so a replica can hand it delivered batches and go on with consensus. The
/// replica's loop may still ask `sessionVerdict` meanwhile: it is answered under `sessionsLock`
/// from the batches finished so far.
public final class ParallelExecutor: @unchecked Sendable {
    // Partitions are touched only by the task the scheduler lets run on them; everything else only
    // by the thread that calls `execute` (one at a time: the caller's, or the lane). The session
    // table is written only by that thread, under `sessionsLock`, and read by others under it.
    // That discipline is what makes this class Sendable.
    public let config: ExecutionConfig
    public let limits: ServiceLimits
    private let partitions: [Partition]
    private let logPartition = LogPartition()
    private var sessions: SessionTable
    private let sessionsLock = NSLock()
    private let pool: WorkerPool?
    /// Where submitted work runs: serial, so batches execute in the order they were delivered.
    private let lane = DispatchQueue(label: "csmr-execution")

    final class Partition: @unchecked Sendable {
        var kv = KeyValueStore()
        var locks = LockTable()
    }

    final class LogPartition: @unchecked Sendable {
        var log = ReplicatedLog()
    }

    public init(config: ExecutionConfig, limits: ServiceLimits = ServiceLimits()) {
        precondition((try? config.validate()) != nil, "invalid execution config \(config)")
        self.config = config
        self.limits = limits
        partitions = (0..<config.partitions).map { _ in Partition() }
        sessions = SessionTable(sessionsMax: limits.sessionsMax)
        pool = config.scheduler == .sequential ? nil : WorkerPool(count: config.workers)
    }

    deinit { pool?.shutdown() }

    /// The session table's answer for a request, without executing anything; any thread may ask,
    /// also while a batch executes (the answer reflects the batches finished so far).
    public func sessionVerdict(for request: Request) -> SessionTable.Verdict {
        sessionsLock.lock()
        defer { sessionsLock.unlock() }
        return sessions.verdict(for: request)
    }

    /// Runs `work` on the executor's lane, after everything submitted before it. Work that calls
    /// `execute`, `stateMachine` or `restore` must come through here while any other does.
    public func submit(_ work: @escaping @Sendable () -> Void) { lane.async(execute: work) }

    /// Blocks until everything submitted so far has run (a driver stopping: what the work hands
    /// to an event loop is then handed over before the loop shuts down).
    public func waitUntilIdle() { lane.sync {} }

    /// Executes `requests` in order (as one decided batch or several): their replies, and
    /// whether each ran.
    public func execute(_ requests: [Request]) -> ExecutionResult {
        var result = ExecutionResult()
        result.replies.reserveCapacity(requests.count)
        result.executed.reserveCapacity(requests.count)
        var start = requests.startIndex
        while start < requests.endIndex {
            if case .openSession = requests[start].command {
                sessionsLock.lock()
                let opened = sessions.open()
                sessionsLock.unlock()
                result.replies.append(.session(opened))
                result.executed.append(true)
                start += 1
                continue
            }
            var end = start
            while end < requests.endIndex, requests[end].command != .openSession { end += 1 }
            executeWindow(Array(requests[start..<end]), into: &result)
            start = end
        }
        return result
    }

    /// The whole state as one `StateMachine` (for digests, snapshots and comparison).
    public var stateMachine: StateMachine {
        // Partitions hold disjoint keys. The first partition's table is shared (copied shard by
        // shard only when written), the others' entries are added to it.
        var kv = partitions.first?.kv.entries ?? [:]
        var holders = partitions.first?.locks.holders ?? [:]
        for partition in partitions.dropFirst() {
            kv.merge(partition.kv.entries) { first, _ in first }
            holders.merge(partition.locks.holders) { first, _ in first }
        }
        return StateMachine(kv: KeyValueStore(entries: kv), locks: LockTable(holders: holders), log: logPartition.log,
                            sessions: sessions, limits: limits)
    }

    /// Replaces the whole state with `machine`'s (a checkpoint restored at start-up or received
    /// by state transfer), each key and lock in the partition its class maps to.
    public func restore(_ machine: StateMachine) {
        var kv = Array(repeating: ShardedTable<String, String>(), count: partitions.count)
        var holders = Array(repeating: ShardedTable<String, ClientID>(), count: partitions.count)
        for (key, value) in machine.kv.entries { kv[ExecutionPlan.partition(ofKey: key, partitions: partitions.count)][key] = value }
        for (name, holder) in machine.locks.holders { holders[ExecutionPlan.partition(ofKey: name, partitions: partitions.count)][name] = holder }
        for (index, partition) in partitions.enumerated() {
            partition.kv = KeyValueStore(entries: kv[index])
            partition.locks = LockTable(holders: holders[index])
        }
        logPartition.log = machine.log
        sessionsLock.lock()
        sessions = machine.sessions
        sessionsLock.unlock()
    }

    private func executeWindow(_ window: [Request], into result: inout ExecutionResult) {
        let plan = ExecutionPlan(window: window, sessions: sessions, partitions: config.partitions)
        let results = ReplySlots(count: plan.tasks.count)
        let tasks = plan.tasks
        Schedule.run(tasks, scheduler: config.scheduler, pool: pool) { [self] position in results[position] = perform(tasks[position]) }
        // Recorded under the lock as a whole, so a verdict never sees half a window.
        sessionsLock.lock()
        defer { sessionsLock.unlock() }
        for (index, admission) in plan.admissions.enumerated() {
            switch admission {
            case let .execute(task):
                result.replies.append(results[task])
                sessions.record(window[index], reply: results[task])
            case let .executeWithoutSession(task): result.replies.append(results[task])
            case let .duplicateOfTask(task): result.replies.append(results[task])
            case let .answered(reply): result.replies.append(reply)
            }
            switch admission {
            case .execute, .executeWithoutSession: result.executed.append(true)
            case .duplicateOfTask, .answered: result.executed.append(false)
            }
        }
    }

    private func perform(_ task: ExecutionTask) -> Reply {
        if config.spinIterationsPerCommand > 0 { SyntheticWork.spin(iterations: config.spinIterationsPerCommand) }
        let command = task.request.command
        switch command.service {
        case .kv: return partitions[task.classes[0]].kv.execute(command)!
        case .lock: return partitions[task.classes[0]].locks.execute(command, client: task.request.client)!
        case .log: return logPartition.log.execute(command, retrieveLimit: limits.retrieveEntriesMax)!
        case .session: preconditionFailure("openSession reached a worker")
        }
    }

}

/// Runs the tasks of a window under a scheduler: tasks sharing a class never overlap and keep
/// their order; `body(position)` does the work of task `position`.
enum Schedule {
    static func run(_ tasks: [ExecutionTask], scheduler: SchedulerKind, pool: WorkerPool?, _ body: @escaping @Sendable (Int) -> Void) {
        switch scheduler {
        case .sequential: for position in tasks.indices { body(position) }
        case .early: runEarly(tasks, pool: pool!, body)
        case .graph: runGraph(tasks, pool: pool!, body)
        }
    }

    private static func runEarly(_ tasks: [ExecutionTask], pool: WorkerPool, _ run: @escaping @Sendable (Int) -> Void) {
        let lists = ExecutionPlan.assignment(of: tasks, workers: pool.count)
        // A task on several workers' lists is a barrier: the last worker to reach it runs it,
        // the others wait until it is done.
        var barriers: [Int: Barrier] = [:]
        for (position, task) in tasks.enumerated() {
            let workers = Set(task.classes.map { $0 % pool.count })
            if workers.count > 1 { barriers[position] = Barrier(parties: workers.count) }
        }
        let frozenBarriers = barriers
        pool.run(lists.map { list in
            { @Sendable in
                for position in list {
                    if let barrier = frozenBarriers[position] {
                        barrier.arrive { run(position) }
                    } else {
                        run(position)
                    }
                }
            }
        })
    }

    private static func runGraph(_ tasks: [ExecutionTask], pool: WorkerPool, _ run: @escaping @Sendable (Int) -> Void) {
        let graph = DependencyGraph(dependencies: ExecutionPlan.dependencies(of: tasks))
        pool.run(Array(repeating: { @Sendable in graph.work(run) }, count: pool.count))
    }
}

/// One reply per task, written by whichever worker runs the task (each slot by exactly one, and
/// read only after the round), so no lock is needed.
final class ReplySlots: @unchecked Sendable {
    private let buffer: UnsafeMutableBufferPointer<Reply>

    init(count: Int) {
        buffer = .allocate(capacity: count)
        buffer.initialize(repeating: .stored)
    }

    deinit {
        buffer.deinitialize()
        buffer.deallocate()
    }

    subscript(position: Int) -> Reply {
        get { buffer[position] }
        set { buffer[position] = newValue }
    }
}

/// Workers meeting over one task: the last to arrive runs it; the others wait for it.
final class Barrier: @unchecked Sendable {
    private let condition = NSCondition()
    private let parties: Int
    private var arrived = 0
    private var done = false

    init(parties: Int) { self.parties = parties }

    func arrive(_ body: () -> Void) {
        condition.lock()
        arrived += 1
        if arrived == parties {
            condition.unlock()
            body()
            condition.lock()
            done = true
            condition.broadcast()
        } else {
            while !done { condition.wait() }
        }
        condition.unlock()
    }
}

/// The pending tasks of a window and who waits for whom; workers take free tasks from it.
final class DependencyGraph: @unchecked Sendable {
    // Guarded by `condition`.
    private let condition = NSCondition()
    private var waitingOn: [Int]
    private var successors: [[Int]]
    private var ready = Deque<Int>()
    private var finished = 0
    private let total: Int

    init(dependencies: [[Int]]) {
        total = dependencies.count
        waitingOn = dependencies.map(\.count)
        successors = Array(repeating: [], count: dependencies.count)
        for (task, waits) in dependencies.enumerated() {
            for earlier in waits { successors[earlier].append(task) }
            if waits.isEmpty { ready.append(task) }
        }
    }

    /// A worker's loop: take a free task, run it, release its successors. A worker keeps one
    /// freed successor for itself, so a chain of conflicting commands runs on one worker without
    /// a wake-up per command.
    func work(_ run: (Int) -> Void) {
        var next: Int?
        while true {
            if next == nil {
                condition.lock()
                while ready.isEmpty && finished < total { condition.wait() }
                if finished == total {
                    condition.unlock()
                    return
                }
                next = ready.popFirst()
                condition.unlock()
            }
            let task = next!
            run(task)
            condition.lock()
            finished += 1
            next = nil
            for successor in successors[task] {
                waitingOn[successor] -= 1
                if waitingOn[successor] == 0 {
                    if next == nil {
                        next = successor
                    } else {
                        ready.append(successor)
                        condition.signal()
                    }
                }
            }
            if finished == total { condition.broadcast() }
            condition.unlock()
        }
    }
}

/// CPU work that the optimizer cannot remove.
public enum SyntheticWork {
    /// Iterations of a multiply-add loop; the driver calibrates how many make a microsecond.
    @inline(never)
    public static func spin(iterations: Int) {
        var value: UInt64 = 0x9e37_79b9_7f4a_7c15
        for _ in 0..<iterations { value = value &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407 }
        sink(value)
    }

    @inline(never)
    static func sink(_ value: UInt64) {
        if value == 42 { print("") }
    }
}
