import Foundation
import Primitives
import Services
import Testing
@testable import Execution

/// A random stream of requests as replicas would deliver it: sessions opened along the way,
/// retries (duplicates), stale and unknown sessions, and a tunable share of commands on one
/// shared key or on the log, where everything conflicts.
func randomStream(seed: UInt64, count: Int, conflictRate: Double) -> [Request] {
    var random = SplitMix64(seed: seed)
    var requests: [Request] = []
    var sessions: [(client: ClientID, sequence: UInt64)] = []
    var opened: UInt64 = 0
    for _ in 0..<count {
        if sessions.isEmpty || random.chance(0.02) {
            requests.append(Request(client: ClientID(999), sequence: 1, command: .openSession))
            opened += 1
            sessions.append((ClientID(opened), 0))
            continue
        }
        let index = Int(random.next() % UInt64(sessions.count))
        if random.chance(0.05), sessions[index].sequence > 0, let last = requests.last(where: { $0.client == sessions[index].client }) {
            requests.append(last)  // A retry.
            continue
        }
        if random.chance(0.01) {
            requests.append(Request(client: ClientID(10_000 + random.next() % 5), sequence: 3, command: .kvGet(key: "x")))
            continue
        }
        sessions[index].sequence += 1
        let shared = random.chance(conflictRate)
        let key = shared ? "shared" : "k\(random.next() % 500)"
        let command: Command
        switch random.next() % 8 {
        case 0, 1: command = .kvGet(key: key)
        case 2, 3: command = .kvPut(key: key, value: "v\(random.next() % 100)")
        case 4: command = .lockAcquire(name: key)
        case 5: command = .lockRelease(name: key)
        default:
            // Log commands conflict with every other log command: they count as conflicting.
            command = shared ? [.logAppend(entry: "e"), .logRetrieve(first: 0, last: 2), .logTruncate(index: random.next() % 5)][Int(random.next() % 3)]
                : .kvPut(key: key, value: "w")
        }
        requests.append(Request(client: sessions[index].client, sequence: sessions[index].sequence, command: command))
    }
    return requests
}

@Suite struct ParallelExecutionTests {
    /// Property: every scheduler, at any worker count and conflict rate, gives the replies and the
    /// state (digest, sessions included) of sequential execution, however the stream is cut into
    /// batches.
    @Test(arguments: [SchedulerKind.early, .graph], [1, 2, 4])
    func resultsEqualSequentialExecution(scheduler: SchedulerKind, workers: Int) {
        for seed in UInt64(1)...25 {
            let conflictRate = [0.0, 0.01, 0.1, 0.5, 1.0][Int(seed % 5)]
            let stream = randomStream(seed: seed, count: 600, conflictRate: conflictRate)
            var reference = StateMachine()
            let expected = stream.map { reference.apply($0) }
            let executor = ParallelExecutor(config: ExecutionConfig(scheduler: scheduler, workers: workers, partitions: Int(seed % 7) + 1))
            var random = SplitMix64(seed: seed)
            var replies: [Reply] = []
            var start = 0
            while start < stream.count {
                let end = min(stream.count, start + 1 + Int(random.next() % 80))
                replies += executor.execute(Array(stream[start..<end])).replies
                start = end
            }
            #expect(replies == expected, "seed \(seed), conflict rate \(conflictRate)")
            #expect(executor.stateMachine.digest == reference.digest, "seed \(seed)")
            #expect(executor.stateMachine == reference, "seed \(seed)")
        }
    }

    @Test func theSequentialSchedulerEqualsApply() {
        let stream = randomStream(seed: 77, count: 500, conflictRate: 0.2)
        var reference = StateMachine()
        let expected = stream.map { reference.apply($0) }
        let executor = ParallelExecutor(config: ExecutionConfig(scheduler: .sequential))
        #expect(executor.execute(stream).replies == expected)
        #expect(executor.stateMachine.digest == reference.digest)
    }

    @Test func syntheticWorkDoesNotChangeResults() {
        let stream = randomStream(seed: 3, count: 200, conflictRate: 0.1)
        var reference = StateMachine()
        let expected = stream.map { reference.apply($0) }
        let executor = ParallelExecutor(config: ExecutionConfig(scheduler: .graph, workers: 2, spinIterationsPerCommand: 500))
        #expect(executor.execute(stream).replies == expected)
    }
}

/// The schedulers on abstract tasks, including tasks spanning several classes (which today's
/// services do not produce, but composed commands will): tasks of one class never overlap and
/// run in order.
@Suite struct SchedulerTests {
    /// What ran on one class, and whether two tasks of it ever ran at once.
    final class ClassLog: @unchecked Sendable {
        private let lock = NSLock()
        private var running = 0
        private(set) var order: [Int] = []
        private(set) var overlaps = 0

        func begin() {
            lock.lock()
            running += 1
            if running > 1 { overlaps += 1 }
            lock.unlock()
        }

        func end(_ position: Int) {
            lock.lock()
            running -= 1
            order.append(position)
            lock.unlock()
        }
    }

    @Test(arguments: [SchedulerKind.early, .graph], [1, 2, 3])
    func conflictingTasksKeepTheirOrderAndNeverOverlap(scheduler: SchedulerKind, workers: Int) {
        let pool = WorkerPool(count: workers)
        defer { pool.shutdown() }
        var random = SplitMix64(seed: UInt64(workers) * 31)
        for _ in 0..<30 {
            let classCount = 1 + Int(random.next() % 6)
            let tasks = (0..<200).map { index in
                let spans = random.chance(0.15) ? 2 + Int(random.next() % 2) : 1
                let classes = Array(Set((0..<spans).map { _ in Int(random.next() % UInt64(classCount)) })).sorted()
                return ExecutionTask(index: index, request: Request(client: ClientID(1), sequence: 1, command: .kvGet(key: "")), classes: classes)
            }
            let logs = (0..<classCount).map { _ in ClassLog() }
            Schedule.run(tasks, scheduler: scheduler, pool: pool) { position in
                for conflictClass in tasks[position].classes { logs[conflictClass].begin() }
                // Uneven work, so that workers interleave differently from task to task.
                SyntheticWork.spin(iterations: (position * 7_919) % 3_000)
                for conflictClass in tasks[position].classes { logs[conflictClass].end(position) }
            }
            for conflictClass in 0..<classCount {
                #expect(logs[conflictClass].overlaps == 0)
                let expected = tasks.indices.filter { tasks[$0].classes.contains(conflictClass) }
                #expect(logs[conflictClass].order == expected)
            }
        }
    }

    @Test func dependenciesPointAtTheLatestEarlierTaskOfEachClass() {
        let tasks = [[0], [1], [0, 1], [1], [2]].enumerated().map {
            ExecutionTask(index: $0.offset, request: Request(client: ClientID(1), sequence: 1, command: .kvGet(key: "")), classes: $0.element)
        }
        #expect(ExecutionPlan.dependencies(of: tasks) == [[], [], [0, 1], [2], []])
        #expect(ExecutionPlan.assignment(of: tasks, workers: 2) == [[0, 2, 4], [1, 2, 3]])
    }

    @Test func admissionAnswersRetriesAndRefusalsWithoutTasks() {
        var sessions = SessionTable(sessionsMax: 10)
        let client = sessions.open()
        let put = Request(client: client, sequence: 1, command: .kvPut(key: "a", value: "1"))
        let plan = ExecutionPlan(window: [put, put, Request(client: client, sequence: 2, command: .kvGet(key: "a")),
                                          Request(client: ClientID(99), sequence: 1, command: .kvGet(key: "a"))],
                                 sessions: sessions, partitions: 4)
        #expect(plan.tasks.count == 2)
        #expect(plan.admissions == [.execute(task: 0), .duplicateOfTask(0), .execute(task: 1), .answered(.failure(.sessionExpired))])
    }
}
