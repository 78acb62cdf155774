import Primitives
import Services

/// Why an execution configuration was refused.
public struct ExecutionConfigError: Error, Hashable, Sendable, CustomStringConvertible {
    public var description: String
}

public struct ExecutionConfig: Hashable, Sendable {
    public var scheduler: SchedulerKind
    /// Worker threads. 1 ... 64; `sequential` ignores it.
    public var workers: Int
    /// Conflict classes the kv and lock state is split into (the log is one more class).
    /// More classes mean fewer false conflicts between different keys. At least 1.
    public var partitions: Int
    /// Synthetic CPU work per executed command, in iterations of a tight arithmetic loop (the
    /// driver calibrates microseconds to iterations), as parallel-SMR studies model costlier
    /// services. 0: none.
    public var spinIterationsPerCommand: Int

    public init(scheduler: SchedulerKind = .sequential, workers: Int = 1, partitions: Int = 64, spinIterationsPerCommand: Int = 0) {
        self.scheduler = scheduler
        self.workers = workers
        self.partitions = partitions
        self.spinIterationsPerCommand = spinIterationsPerCommand
    }

    public func validate() throws(ExecutionConfigError) {
        guard (1...64).contains(workers) else { throw ExecutionConfigError(description: "workers must be 1 ... 64, got \(workers)") }
        guard (1...65_536).contains(partitions) else { throw ExecutionConfigError(description: "partitions must be 1 ... 65536, got \(partitions)") }
        guard spinIterationsPerCommand >= 0 else { throw ExecutionConfigError(description: "spinIterationsPerCommand must not be negative") }
    }
}

/// One command admitted by the session table, with the conflict classes it touches.
public struct ExecutionTask: Hashable, Sendable {
    /// Position in the window (and in the reply array).
    public var index: Int
    public var request: Request
    public var classes: [Int]
}

/// What the session table decided for one request of a window, in order.
public enum Admission: Hashable, Sendable {
    /// Executed as task `task` (an index into the plan's tasks).
    case execute(task: Int)
    /// Executed as task `task`, outside the session table (`logAppendFrom`).
    case executeWithoutSession(task: Int)
    /// A retry of the request executed as task `task` in this window: gets its reply.
    case duplicateOfTask(Int)
    /// Answered without execution (a stored reply, or a refusal).
    case answered(Reply)
}

/// The pure part of parallel execution: which requests of a window run, which conflict classes
/// each touches, and which task must wait for which.
public struct ExecutionPlan: Hashable, Sendable {
    public var admissions: [Admission] = []
    public var tasks: [ExecutionTask] = []

    /// Conflict class of a command: a partition for kv keys and lock names (by a stable hash, the
    /// same on every replica and run), one class for the whole log.
    public static func conflictClass(of command: Command, partitions: Int) -> Int {
        switch command {
        case let .kvGet(key), let .kvPut(key, _): return partition(ofKey: key, partitions: partitions)
        case let .lockAcquire(name), let .lockRelease(name):
            // Locks use the same partitions as keys but their own state, so a lock and a key of
            // one name only share a class, never state.
            return partition(ofKey: name, partitions: partitions)
        case .logAppend, .logRetrieve, .logTruncate, .logAppendFrom: return partitions
        case .openSession: preconditionFailure("openSession is not executed by workers")
        }
    }

    /// The partition a kv key or a lock name belongs to.
    public static func partition(ofKey key: String, partitions: Int) -> Int { Int(Digest(of: key.utf8).value % UInt64(partitions)) }

    /// Admits a window of requests (without `openSession`) against `sessions`, which is not
    /// changed: the caller records replies afterwards, in order, as sequential execution would.
    public init(window: [Request], sessions: SessionTable, partitions: Int) {
        // Requests of this window already admitted, per client: their sequence and task.
        var admitted: [ClientID: (sequence: UInt64, task: Int)] = [:]
        for (index, request) in window.enumerated() {
            if !request.command.usesSession {
                tasks.append(ExecutionTask(index: index, request: request, classes: [Self.conflictClass(of: request.command, partitions: partitions)]))
                admissions.append(.executeWithoutSession(task: tasks.count - 1))
                continue
            }
            if let earlier = admitted[request.client] {
                if request.sequence == earlier.sequence {
                    admissions.append(.duplicateOfTask(earlier.task))
                    continue
                }
                if request.sequence < earlier.sequence {
                    admissions.append(.answered(.failure(.staleSequence(sequence: request.sequence, latest: earlier.sequence))))
                    continue
                }
            } else {
                switch sessions.verdict(for: request) {
                case let .duplicate(reply):
                    admissions.append(.answered(reply))
                    continue
                case let .reject(error):
                    admissions.append(.answered(.failure(error)))
                    continue
                case .execute: break
                }
            }
            let task = tasks.count
            tasks.append(ExecutionTask(index: index, request: request, classes: [Self.conflictClass(of: request.command, partitions: partitions)]))
            admissions.append(.execute(task: task))
            admitted[request.client] = (request.sequence, task)
        }
    }

    /// For each task, the earlier tasks it must wait for: the latest earlier task of each of its
    /// classes (waiting for that one orders it after all earlier ones of the class).
    public static func dependencies(of tasks: [ExecutionTask]) -> [[Int]] {
        var lastOfClass: [Int: Int] = [:]
        var dependencies: [[Int]] = []
        dependencies.reserveCapacity(tasks.count)
        for (position, task) in tasks.enumerated() {
            var waits: [Int] = []
            for conflictClass in task.classes {
                if let last = lastOfClass[conflictClass], !waits.contains(last) { waits.append(last) }
                lastOfClass[conflictClass] = position
            }
            dependencies.append(waits)
        }
        return dependencies
    }

    /// Early scheduling's assignment: per worker, the tasks it runs in order; a task whose
    /// classes map to several workers appears in each of their lists (a barrier).
    public static func assignment(of tasks: [ExecutionTask], workers: Int) -> [[Int]] {
        var lists = Array(repeating: [Int](), count: workers)
        for (position, task) in tasks.enumerated() {
            var involved: [Int] = []
            for conflictClass in task.classes where !involved.contains(conflictClass % workers) { involved.append(conflictClass % workers) }
            for worker in involved.sorted() { lists[worker].append(position) }
        }
        return lists
    }
}
