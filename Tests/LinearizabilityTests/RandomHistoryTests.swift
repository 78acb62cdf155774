import Linearizability
import Primitives
import Services
import Testing

/// Builds histories that are linearizable by construction: every operation gets a random
/// interval and a random linearization point inside it, and the replies come from executing the
/// operations on a real `StateMachine` in the order of those points.
struct HistoryGenerator {
    var random: SplitMix64
    var clients: Int = 8
    /// Chance that an operation never gets a reply; half of those still take effect.
    var pendingChance: Double = 0
    /// When false, each operation is invoked after the previous one completed, so the history is
    /// sequential and every reply is forced.
    var overlapping = true
    /// Most time between consecutive invocations, in ns; operations last 1 to 60 ns.
    var invocationGapMax: UInt64 = 8

    init(seed: UInt64) { random = SplitMix64(seed: seed) }

    mutating func below(_ bound: UInt64) -> UInt64 { random.next() % bound }

    /// `count` operations whose commands `choose` picks, just before they take effect, from the
    /// state they will see (so retrieves and truncates aim at interesting indices).
    mutating func history(count: Int, choose: (inout SplitMix64, StateMachine, ClientID) -> Command) -> [HistoryOperation] {
        struct Slot {
            var client: ClientID
            var invoke: UInt64
            var complete: UInt64
            var linearization: UInt64
            var isPending: Bool
            var takesEffect: Bool
        }
        var slots: [Slot] = []
        var clientFree = [UInt64](repeating: 0, count: clients)
        var clock: UInt64 = 0
        for _ in 0..<count {
            let client = Int(below(UInt64(clients)))
            let invoke = max(clock, clientFree[client])
            let duration = 1 + below(60)
            let complete = invoke + duration
            let isPending = random.chance(pendingChance)
            slots.append(Slot(client: ClientID(UInt64(client + 1)), invoke: invoke, complete: complete,
                              linearization: invoke + below(duration + 1), isPending: isPending,
                              takesEffect: !isPending || random.chance(0.5)))
            clientFree[client] = complete + 1 + below(5)
            clock = overlapping ? clock + below(invocationGapMax) : complete + 1
        }
        let order = slots.indices.sorted { (slots[$0].linearization, $0) < (slots[$1].linearization, $1) }
        var machine = StateMachine()
        var operations = [HistoryOperation?](repeating: nil, count: count)
        for index in order {
            let slot = slots[index]
            let command = choose(&random, machine, slot.client)
            var completion: HistoryOperation.Completion?
            if slot.takesEffect {
                let reply = machine.execute(command, client: slot.client)
                if !slot.isPending { completion = HistoryOperation.Completion(nanoseconds: slot.complete, reply: reply) }
            }
            operations[index] = HistoryOperation(client: slot.client, command: command,
                                                 invokeNanoseconds: slot.invoke, completion: completion)
        }
        return operations.map { $0! }
    }
}

/// Commands on a few keys, two locks and the log, so every model and the per-object split get
/// exercised at once.
func mixedCommand(_ random: inout SplitMix64, _ machine: StateMachine, _ client: ClientID) -> Command {
    switch random.next() % 10 {
    case 0, 1: return .kvGet(key: "k\(random.next() % 3)")
    case 2, 3: return .kvPut(key: "k\(random.next() % 3)", value: "v\(random.next() % 1_000_000)")
    case 4: return .lockAcquire(name: "L\(random.next() % 2)")
    case 5: return .lockRelease(name: "L\(random.next() % 2)")
    default: return logCommand(&random, machine, client)
    }
}

/// Log commands, mostly appends and retrieves near the end, with truncations and every kind of
/// failing retrieve now and then.
func logCommand(_ random: inout SplitMix64, _ machine: StateMachine, _ client: ClientID) -> Command {
    let log = machine.log
    let roll = random.next() % 100
    if roll < 55 { return .logAppend(entry: "e\(random.next() % 1_000_000)") }
    if roll < 88 {
        guard log.endIndex > log.firstIndex else { return .logRetrieve(first: log.endIndex, last: log.endIndex) }
        let last = log.endIndex - 1 - min(random.next() % 4, log.endIndex - 1 - log.firstIndex)
        return .logRetrieve(first: last - min(random.next() % 4, last - log.firstIndex), last: last)
    }
    if roll < 94 { return .logTruncate(index: log.firstIndex + random.next() % (log.endIndex - log.firstIndex + 3)) }
    switch random.next() % 4 {
    case 0: return .logRetrieve(first: 5, last: 4)
    case 1: return .logRetrieve(first: 0, last: UInt64.max)
    case 2: return .logRetrieve(first: log.endIndex, last: log.endIndex + 2)
    default: return .logRetrieve(first: 0, last: 0)
    }
}

/// The same history with operation `index`'s reply replaced.
func replacingReply(of index: Int, in history: [HistoryOperation], with reply: Reply) -> [HistoryOperation] {
    var changed = history
    changed[index].completion!.reply = reply
    return changed
}

/// A reply of the same kind as `reply` but different from it, so it passes the checker's shape
/// test and has to be caught by the search.
func corrupted(_ reply: Reply) -> Reply? {
    switch reply {
    case let .value(value): return .value(value == nil ? "corrupt" : nil)
    case let .flag(flag): return .flag(!flag)
    case let .index(index): return .index(index + 1)
    case let .entries(first, entries): return .entries(first: first, ["corrupt"] + entries.dropFirst())
    case let .failure(.outOfRange(first, last, available)):
        return .failure(.outOfRange(first: first, last: last, available: available.lowerBound..<(available.upperBound + 1)))
    case .stored, .session, .extensionStep, .failure: return nil
    }
}

@Suite struct RandomHistoryTests {
    let checker = LinearizabilityChecker()

    @Test func historiesOfTheRealServicesAreAcceptedAndCorruptedOnesRejected() {
        for seed in UInt64(1)...20 {
            var generator = HistoryGenerator(seed: seed)
            generator.pendingChance = 0.05
            let history = generator.history(count: 300, choose: mixedCommand)
            #expect(checker.check(history) == .linearizable, "seed \(seed)")

            // An index no append could get, since the log never grows that long.
            if let append = history.indices.first(where: {
                if case .index? = history[$0].completion?.reply { true } else { false }
            }) {
                let result = checker.check(replacingReply(of: append, in: history, with: .index(1_000_000)))
                #expect(violatedObject(result) == "log", "seed \(seed)")
            }
            // A value no put wrote, since written values look like "v<n>".
            if let get = history.indices.first(where: {
                if case .kvGet = history[$0].command { history[$0].completion != nil } else { false }
            }) {
                let result = checker.check(replacingReply(of: get, in: history, with: .value("corrupt")))
                #expect(violatedObject(result) == "\(objectName(of: history[get].command))", "seed \(seed)")
            }
        }
    }

    @Test func flippingALockReplyIsUsuallyCaught() {
        // A flipped flag is not always wrong (a concurrent release can excuse it), so this only
        // asserts that the checker catches most of them on a fixed set of seeds.
        var flipped = 0
        var caught = 0
        for seed in UInt64(100)..<140 {
            var generator = HistoryGenerator(seed: seed)
            let history = generator.history(count: 200, choose: mixedCommand)
            guard let lock = history.indices.last(where: {
                if case .lockAcquire = history[$0].command { true } else { false }
            }), let reply = history[lock].completion?.reply else { continue }
            flipped += 1
            if violatedObject(checker.check(replacingReply(of: lock, in: history, with: corrupted(reply)!))) != nil {
                caught += 1
            }
        }
        #expect(flipped >= 30)
        #expect(caught * 4 >= flipped * 3, "caught \(caught) of \(flipped)")
    }

    @Test func everyWrongReplyInASequentialHistoryIsRejected() {
        // In a sequential history the order is forced, so the model has to reproduce every reply
        // of the real services exactly, and any other reply must be a violation.
        var generator = HistoryGenerator(seed: 7)
        generator.overlapping = false
        let history = generator.history(count: 150, choose: mixedCommand)
        #expect(checker.check(history) == .linearizable)
        var corruptions = 0
        for index in history.indices {
            guard let reply = history[index].completion?.reply, let wrong = corrupted(reply) else { continue }
            corruptions += 1
            let result = checker.check(replacingReply(of: index, in: history, with: wrong))
            #expect(violatedObject(result) == objectName(of: history[index].command),
                    "operation \(index): \(history[index].command) replied \(wrong) instead of \(reply)")
        }
        #expect(corruptions > 100)
    }

    // These two only have to finish: before the search placed pending operations lazily, a few
    // dozen of them made such histories run into the search bound.
    @Test func twoThousandConcurrentLogOperationsCheckQuickly() {
        var generator = HistoryGenerator(seed: 2_024)
        generator.pendingChance = 0.05
        let history = generator.history(count: 2_000, choose: logCommand)
        #expect(history.count == 2_000)
        #expect(checker.check(history) == .linearizable)
        let lastAppend = history.lastIndex {
            if case .index? = $0.completion?.reply { true } else { false }
        }!
        #expect(violatedObject(checker.check(replacingReply(of: lastAppend, in: history, with: .index(1_000_000)))) == "log")
    }

    @Test func twoThousandOperationsOfTenClientsOnOneLockCheckQuickly() {
        var generator = HistoryGenerator(seed: 1)
        generator.clients = 10
        generator.pendingChance = 0.1
        let history = generator.history(count: 2_000) { random, _, _ in
            random.next() % 2 == 0 ? .lockAcquire(name: "L") : .lockRelease(name: "L")
        }
        #expect(checker.check(history) == .linearizable)
    }
}

/// The checker's name for the object `command` acts on.
func objectName(of command: Command) -> String {
    switch command {
    case let .kvGet(key), let .kvPut(key, _): "kv:\(key)"
    case let .lockAcquire(name), let .lockRelease(name): "lock:\(name)"
    case .logAppend, .logRetrieve, .logTruncate: "log"
    case .openSession, .logAppendFrom: "none"
    }
}
