import Linearizability
import Primitives
import Services
import Testing

/// Decides linearizability by brute force: every order of the operations that respects real
/// time, replayed on a real `StateMachine`. A pending operation may take effect anywhere or not
/// at all, and leaving it out is the same as putting it last, so the search succeeds once only
/// pending operations remain. Exponential, so only for histories of a handful of operations.
func isLinearizableByBruteForce(_ history: [HistoryOperation]) -> Bool {
    let operations = history.filter { operation in
        switch operation.completion?.reply {
        case .failure(.sessionExpired), .failure(.staleSequence): return false
        default: if case .openSession = operation.command { return false } else { return true }
        }
    }
    func search(_ machine: StateMachine, _ remaining: [Int]) -> Bool {
        if remaining.allSatisfy({ operations[$0].completion == nil }) { return true }
        for candidate in remaining {
            let invoked = operations[candidate].invokeNanoseconds
            // A remaining operation that completed before this one was invoked must come first.
            if remaining.contains(where: { (operations[$0].completion?.nanoseconds).map { $0 < invoked } ?? false }) { continue }
            var next = machine
            let reply = next.execute(operations[candidate].command, client: operations[candidate].client)
            if let recorded = operations[candidate].completion?.reply, recorded != reply { continue }
            if search(next, remaining.filter { $0 != candidate }) { return true }
        }
        return false
    }
    return search(StateMachine(), Array(operations.indices))
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
        }
    }
}

@Suite struct OracleTests {
    @Test(arguments: TinyObject.allCases)
    func theCheckerAgreesWithBruteForceOnTinyHistories(object: TinyObject) {
        let checker = LinearizabilityChecker()
        var random = SplitMix64(seed: 99)
        var verdicts: [Bool: Int] = [:]
        for seed in UInt64(0)..<400 {
            var generator = HistoryGenerator(seed: seed)
            generator.clients = 3
            generator.pendingChance = 0.25
            generator.invocationGapMax = 30
            var history = generator.history(count: 6) { random, _, _ in object.command(&random) }
            // Replace a few replies at random so that a good part of the histories are wrong.
            for index in history.indices where history[index].completion != nil && random.chance(0.3) {
                history[index].completion!.reply = object.plausibleReply(to: history[index].command, &random)
            }
            let expected = isLinearizableByBruteForce(history)
            let result = checker.check(history)
            verdicts[expected, default: 0] += 1
            #expect((result == .linearizable) == expected, "seed \(seed): \(result) for \(history)")
            if !expected, case .undecided = result { Issue.record("seed \(seed) undecided") }
        }
        // Both verdicts must be well represented, or the comparison proves little.
        #expect(verdicts[true, default: 0] >= 100 && verdicts[false, default: 0] >= 100, "\(object) \(verdicts)")
    }
}
