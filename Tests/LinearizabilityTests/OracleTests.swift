import Linearizability
import Primitives
import Services
import Testing

/// Decides linearizability by exhaustive search: every order of the operations that respects real
/// time, replayed on a real `StateMachine`, remembering only the (remaining set, state) pairs that
/// failed. A pending operation may take effect anywhere or not at all, and leaving it out is the
/// same as putting it last, so the search succeeds once only pending operations remain. It shares
/// none of the checker's shortcuts, so it is the reference the checker is held to. At most 64
/// operations.
func isLinearizableByExhaustiveSearch(_ history: [HistoryOperation]) -> Bool {
    let operations = history.filter { operation in
        switch operation.completion?.reply {
        case .failure(.sessionExpired), .failure(.staleSequence), .failure(.notPermitted): return false
        default: if case .openSession = operation.command { return false } else { return true }
        }
    }
    precondition(operations.count <= 64, "the exhaustive search takes at most 64 operations")
    struct Failure: Hashable {
        var remaining: UInt64
        var machine: StateMachine
    }
    var failures = Set<Failure>()
    func search(_ machine: StateMachine, _ remaining: UInt64) -> Bool {
        let indices = operations.indices.filter { remaining & (1 << UInt64($0)) != 0 }
        if indices.allSatisfy({ operations[$0].completion == nil }) { return true }
        if failures.contains(Failure(remaining: remaining, machine: machine)) { return false }
        for candidate in indices {
            let invoked = operations[candidate].invokeNanoseconds
            // A remaining operation that completed before this one was invoked must come first.
            if indices.contains(where: { (operations[$0].completion?.nanoseconds).map { $0 < invoked } ?? false }) { continue }
            var next = machine
            let reply = next.execute(operations[candidate].command, client: operations[candidate].client)
            if let recorded = operations[candidate].completion?.reply, recorded != reply { continue }
            if search(next, remaining & ~(1 << UInt64(candidate))) { return true }
        }
        failures.insert(Failure(remaining: remaining, machine: machine))
        return false
    }
    let all: UInt64 = operations.count == 64 ? ~0 : (1 << UInt64(operations.count)) - 1
    return search(StateMachine(), all)
}

/// Commands on one object with few distinct arguments, so operations collide often.
enum TinyObject: CaseIterable {
    case register, lock, log

    func command(_ random: inout SplitMix64) -> Command {
        let values = ["a", "b", "c"]
        switch self {
        case .register:
            return random.next() % 2 == 0 ? .kvGet(key: "k") : .kvPut(key: "k", value: values[Int(random.next() % 3)])
        case .lock:
            return random.next() % 2 == 0 ? .lockAcquire(name: "L") : .lockRelease(name: "L")
        case .log:
            switch random.next() % 6 {
            case 0, 1, 2: return .logAppend(entry: values[Int(random.next() % 3)])
            case 3, 4:
                let first = random.next() % 3
                return .logRetrieve(first: first, last: first + random.next() % 2)
            default: return .logTruncate(index: random.next() % 4)
            }
        }
    }

    /// A reply the command could plausibly have got, often a wrong one.
    func plausibleReply(to command: Command, _ random: inout SplitMix64) -> Reply {
        let values = ["a", "b", "c"]
        switch command {
        case .kvGet: return .value(random.next() % 4 == 0 ? nil : values[Int(random.next() % 3)])
        case .kvPut: return .stored
        case .lockAcquire, .lockRelease, .logTruncate: return .flag(random.next() % 2 == 0)
        case .logAppend: return .index(random.next() % 4)
        case let .logRetrieve(first, last):
            if random.next() % 3 == 0 {
                let lower = random.next() % 3
                return .failure(.outOfRange(first: first, last: last, available: lower..<(lower + random.next() % 3)))
            }
            return .entries(first: first, (first...last).map { _ in values[Int(random.next() % 3)] })
        case .openSession: return .session(ClientID(1))
        case .logAppendFrom: return .extensionStep(appendedAt: nil, applied: 0)
        }
    }
}

@Suite struct OracleTests {
    @Test(arguments: TinyObject.allCases)
    func theCheckerAgreesWithExhaustiveSearchOnSmallHistories(object: TinyObject) {
        let checker = LinearizabilityChecker()
        var random = SplitMix64(seed: 99)
        var verdicts: [Bool: Int] = [:]
        for seed in UInt64(0)..<500 {
            var generator = HistoryGenerator(seed: seed)
            generator.clients = 4
            generator.pendingChance = 0.3
            generator.invocationGapMax = 15
            var history = generator.history(count: 12) { random, _, _ in object.command(&random) }
            // Replace one reply in most histories, often by a wrong one.
            let answered = history.indices.filter { history[$0].completion != nil }
            if !answered.isEmpty, random.chance(0.75) {
                let index = answered[Int(random.next() % UInt64(answered.count))]
                history[index].completion!.reply = object.plausibleReply(to: history[index].command, &random)
            }
            let expected = isLinearizableByExhaustiveSearch(history)
            let result = checker.check(history)
            verdicts[expected, default: 0] += 1
            #expect((result == .linearizable) == expected, "seed \(seed): \(result) for \(history)")
            if !expected, case .undecided = result { Issue.record("seed \(seed) undecided") }
        }
        // Both verdicts must be well represented, or the comparison proves little.
        #expect(verdicts[true, default: 0] >= 50 && verdicts[false, default: 0] >= 50, "\(object) \(verdicts)")
    }
}
