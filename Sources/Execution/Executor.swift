import Primitives
import Services

/// What executing a run of requests gave: a reply per request, and whether each ran (false for
/// a retry answered from the session table and for a refusal), which a replica needs to number
/// extension steps.
public struct ExecutionResult: Hashable, Sendable {
    public var replies: [Reply]
    public var executed: [Bool]

    public init(replies: [Reply] = [], executed: [Bool] = []) {
        self.replies = replies
        self.executed = executed
    }
}

/// How a replica executes decided requests: one by one on a `StateMachine` (the reference), or
/// on a `ParallelExecutor` (a parallel scheduler or a synthetic cost per command), with equal
/// results either way.
public enum Executor: Sendable {
    case sequential(StateMachine)
    case parallel(ParallelExecutor)

    /// `.sequential` unless the configuration asks for a parallel scheduler or synthetic work.
    public init(config: ExecutionConfig, limits: ServiceLimits = ServiceLimits()) {
        if config.scheduler == .sequential, config.spinIterationsPerCommand == 0 {
            self = .sequential(StateMachine(limits: limits))
        } else {
            self = .parallel(ParallelExecutor(config: config, limits: limits))
        }
    }

    /// The parallel executor, if this is one (it may run batches off the caller's thread).
    public var parallelExecutor: ParallelExecutor? {
        switch self {
        case .sequential: nil
        case let .parallel(executor): executor
        }
    }

    /// Executes `requests` in order.
    public mutating func execute(_ requests: [Request]) -> ExecutionResult {
        if case let .parallel(executor) = self { return executor.execute(requests) }
        // Move the machine out (`consume`), so that it is uniquely referenced while it changes
        // (the enum's copy would make every write copy its tables), and back in after. Moving
        // costs nothing; copying it out and parking an empty machine in its place cost every
        // batch a dozen reference-count operations (about 2 % of a quickstart run).
        guard case var .sequential(machine) = consume self else { preconditionFailure("an executor is sequential or parallel") }
        var result = ExecutionResult()
        result.replies.reserveCapacity(requests.count)
        result.executed.reserveCapacity(requests.count)
        for request in requests {
            let (reply, ran) = machine.applyReportingExecution(request)
            result.replies.append(reply)
            result.executed.append(ran)
        }
        self = .sequential(machine)
        return result
    }

    /// The session table's answer for a request, without executing anything. A parallel
    /// executor answers from the batches it has finished, even while it runs another.
    public func sessionVerdict(for request: Request) -> SessionTable.Verdict {
        switch self {
        case let .sequential(machine): machine.sessionVerdict(for: request)
        case let .parallel(executor): executor.sessionVerdict(for: request)
        }
    }

    /// The whole state as one `StateMachine`. For a parallel executor, read it only on the
    /// thread that runs its batches, or while none runs.
    public var stateMachine: StateMachine {
        switch self {
        case let .sequential(machine): machine
        case let .parallel(executor): executor.stateMachine
        }
    }

    /// Replaces the whole state (a checkpoint restored or received).
    public mutating func restore(_ machine: StateMachine) {
        switch self {
        case .sequential: self = .sequential(machine)
        case let .parallel(executor): executor.restore(machine)
        }
    }
}
