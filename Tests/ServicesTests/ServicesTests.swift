import Primitives
import Services
import Testing

private let alice = ClientID(1)
private let bob = ClientID(2)

/// Drives one state machine with per-client sequence numbers, as a well-behaved client would.
private struct Driver {
    var machine: StateMachine
    var sequences: [ClientID: UInt64] = [:]

    /// Opens sessions 1 ... `clients` (ids are handed out in order, so alice is 1 and bob is 2).
    init(clients: Int = 8, limits: ServiceLimits = ServiceLimits()) {
        machine = StateMachine(limits: limits)
        for expected in 1...clients {
            let reply = machine.apply(Request(client: ClientID(9_999), sequence: 1, command: .openSession))
            precondition(reply == .session(ClientID(UInt64(expected))), "session \(expected) opened as \(reply)")
        }
    }

    mutating func call(_ client: ClientID, _ command: Command) -> Reply {
        let sequence = sequences[client, default: 0] + 1
        sequences[client] = sequence
        return machine.apply(Request(client: client, sequence: sequence, command: command))
    }
}

@Suite struct KeyValueTests {
    @Test func getOfAnUnknownKeyIsNil() {
        var driver = Driver()
        #expect(driver.call(alice, .kvGet(key: "missing")) == .value(nil))
    }

    @Test func putThenGetReturnsTheLatestValue() {
        var driver = Driver()
        #expect(driver.call(alice, .kvPut(key: "k", value: "1")) == .stored)
        #expect(driver.call(bob, .kvPut(key: "k", value: "2")) == .stored)
        #expect(driver.call(alice, .kvGet(key: "k")) == .value("2"))
    }

    @Test func aCopyKeepsItsEntriesWhileTheOriginalIsWritten() {
        var store = KeyValueStore()
        for index in 0..<5_000 { store.put("k\(index)", "v\(index)") }
        let copy = store
        for index in stride(from: 0, to: 5_000, by: 7) { store.put("k\(index)", "w\(index)") }
        store.put("new", "x")
        #expect(copy.entries.count == 5_000)
        #expect((0..<5_000).allSatisfy { copy.get("k\($0)") == "v\($0)" })
        #expect(store.get("k7") == "w7" && store.get("k8") == "v8" && store.get("new") == "x")
        #expect(copy.get("new") == nil)
    }

    @Test func emptyKeysAndValuesAreOrdinary() {
        var driver = Driver()
        _ = driver.call(alice, .kvPut(key: "", value: ""))
        #expect(driver.call(alice, .kvGet(key: "")) == .value(""))
    }
}

@Suite struct LockTests {
    @Test func acquireOfAFreeLockSucceeds() {
        var driver = Driver()
        #expect(driver.call(alice, .lockAcquire(name: "L")) == .flag(true))
        #expect(driver.machine.locks.holder(of: "L") == alice)
    }

    @Test func acquireByTheHolderIsIdempotent() {
        var driver = Driver()
        _ = driver.call(alice, .lockAcquire(name: "L"))
        #expect(driver.call(alice, .lockAcquire(name: "L")) == .flag(true))
        #expect(driver.machine.locks.holder(of: "L") == alice)
    }

    @Test func acquireOfALockHeldByAnotherSessionFails() {
        var driver = Driver()
        _ = driver.call(alice, .lockAcquire(name: "L"))
        #expect(driver.call(bob, .lockAcquire(name: "L")) == .flag(false))
        #expect(driver.machine.locks.holder(of: "L") == alice)
    }

    @Test func releaseByANonHolderFailsAndKeepsTheLock() {
        var driver = Driver()
        _ = driver.call(alice, .lockAcquire(name: "L"))
        #expect(driver.call(bob, .lockRelease(name: "L")) == .flag(false))
        #expect(driver.machine.locks.holder(of: "L") == alice)
    }

    @Test func releaseOfAFreeLockFails() {
        var driver = Driver()
        #expect(driver.call(alice, .lockRelease(name: "never")) == .flag(false))
    }

    @Test func releaseByTheHolderFreesTheLockForOthers() {
        var driver = Driver()
        _ = driver.call(alice, .lockAcquire(name: "L"))
        #expect(driver.call(alice, .lockRelease(name: "L")) == .flag(true))
        #expect(driver.call(alice, .lockRelease(name: "L")) == .flag(false))
        #expect(driver.call(bob, .lockAcquire(name: "L")) == .flag(true))
    }
}

@Suite struct LogTests {
    @Test func appendsGetConsecutiveIndicesFromZero() {
        var driver = Driver()
        #expect(driver.call(alice, .logAppend(entry: "a")) == .index(0))
        #expect(driver.call(bob, .logAppend(entry: "b")) == .index(1))
        #expect(driver.call(alice, .logRetrieve(first: 0, last: 1)) == .entries(first: 0, ["a", "b"]))
    }

    @Test func retrieveOutOfRangeIsATypedError() {
        var driver = Driver()
        _ = driver.call(alice, .logAppend(entry: "a"))
        #expect(driver.call(alice, .logRetrieve(first: 0, last: 1))
            == .failure(.outOfRange(first: 0, last: 1, available: 0..<1)))
        #expect(driver.call(alice, .logRetrieve(first: 5, last: 5))
            == .failure(.outOfRange(first: 5, last: 5, available: 0..<1)))
    }

    @Test func retrieveOfAnEmptyLogIsOutOfRange() {
        var driver = Driver()
        #expect(driver.call(alice, .logRetrieve(first: 0, last: 0))
            == .failure(.outOfRange(first: 0, last: 0, available: 0..<0)))
    }

    @Test func retrieveWithFirstAfterLastIsAnEmptyRange() {
        var driver = Driver()
        #expect(driver.call(alice, .logRetrieve(first: 3, last: 2)) == .failure(.emptyRange(first: 3, last: 2)))
    }

    @Test func retrieveLongerThanTheLimitIsRefused() {
        var driver = Driver()
        #expect(driver.call(alice, .logRetrieve(first: 0, last: 5000)) == .failure(.rangeTooLong(requested: 5001, limit: 1024)))
        #expect(driver.call(alice, .logRetrieve(first: 0, last: UInt64.max))
            == .failure(.rangeTooLong(requested: UInt64.max, limit: 1024)))
    }

    @Test func truncateDropsThePrefixAndKeepsIndices() {
        var driver = Driver()
        for entry in ["a", "b", "c"] { _ = driver.call(alice, .logAppend(entry: entry)) }
        #expect(driver.call(alice, .logTruncate(index: 2)) == .flag(true))
        #expect(driver.call(alice, .logRetrieve(first: 1, last: 2)) == .failure(.outOfRange(first: 1, last: 2, available: 2..<3)))
        #expect(driver.call(alice, .logRetrieve(first: 2, last: 2)) == .entries(first: 2, ["c"]))
        #expect(driver.call(alice, .logAppend(entry: "d")) == .index(3))
    }

    @Test func truncateBelowTheRetainedStartChangesNothing() {
        var driver = Driver()
        for entry in ["a", "b"] { _ = driver.call(alice, .logAppend(entry: entry)) }
        _ = driver.call(alice, .logTruncate(index: 1))
        #expect(driver.call(alice, .logTruncate(index: 0)) == .flag(true))
        #expect(driver.machine.log.retained == 1..<2)
    }

    @Test func truncateAtTheEndDropsEverythingAndPastTheEndFails() {
        var driver = Driver()
        for entry in ["a", "b"] { _ = driver.call(alice, .logAppend(entry: entry)) }
        #expect(driver.call(alice, .logTruncate(index: 3)) == .flag(false))
        #expect(driver.machine.log.retained == 0..<2)
        #expect(driver.call(alice, .logTruncate(index: 2)) == .flag(true))
        #expect(driver.machine.log.retained == 2..<2)
    }

    @Test func manyTruncationsKeepTheLogConsistent() {
        var log = ReplicatedLog()
        for round in 0..<2_000 {
            #expect(log.append("e\(round)") == UInt64(round))
            if round % 3 == 2 {
                let truncated = log.truncate(below: UInt64(round - 1))
                #expect(truncated)
            }
        }
        #expect(log.retained == 1996..<2000)
        #expect(log.retrieve(first: 1998, last: 1999, limit: 10) == .success(["e1998", "e1999"]))
    }

    /// The log keeps its entries in chunks; an array with a dropped prefix is the model. Random
    /// appends, truncations (inside chunks, on their edges, to the end) and retrievals that span
    /// chunks, with a snapshot round trip and a copy kept aside along the way.
    @Test(arguments: [1, 2, 3, 4]) func randomOperationsMatchAnArrayModel(seed: UInt64) throws {
        var random = SplitMix64(seed: seed)
        var log = ReplicatedLog()
        var model: [String] = []
        var first: UInt64 = 0
        var copies: [(ReplicatedLog, [String], UInt64)] = []
        for step in 0..<6_000 {
            switch random.next() % 10 {
            case 0..<6:
                for _ in 0..<Int(random.next() % 400) {
                    let entry = "s\(seed)-\(step)-\(model.count)"
                    #expect(log.append(entry) == first + UInt64(model.count))
                    model.append(entry)
                }
            case 6:
                let below = first + random.next() % (UInt64(model.count) + 2)
                let accepted = log.truncate(below: below)
                #expect(accepted == (below <= first + UInt64(model.count)))
                if accepted, below > first {
                    model.removeFirst(Int(below - first))
                    first = below
                }
            case 7:
                copies.append((log, model, first))
            default:
                guard !model.isEmpty else { continue }
                let from = random.next() % UInt64(model.count)
                let last = min(UInt64(model.count) - 1, from + random.next() % 3_000)
                let expected = Array(model[Int(from)...Int(last)])
                #expect(log.retrieve(first: first + from, last: first + last, limit: 4_096) == .success(expected))
                #expect(log.entry(at: first + from) == model[Int(from)])
            }
            #expect(log.retained == first..<(first + UInt64(model.count)))
        }
        #expect(Array(log.entries) == model)
        var writer = ByteWriter()
        log.encode(into: &writer)
        var reader = ByteReader(writer.bytes)
        #expect(try ReplicatedLog.decode(from: &reader, limits: .standard) == log)
        // Copies share chunks with the log that went on: none of its writes show in them.
        for (copy, model, first) in copies {
            #expect(copy.retained == first..<(first + UInt64(model.count)))
            #expect(Array(copy.entries) == model)
        }
    }
}

@Suite struct SessionTests {
    @Test func openSessionHandsOutFreshIdsEvenToARetry() {
        var machine = StateMachine()
        let open = Request(client: ClientID(77), sequence: 1, command: .openSession)
        #expect(machine.apply(open) == .session(ClientID(1)))
        #expect(machine.apply(open) == .session(ClientID(2)))
    }

    @Test func aDuplicateRequestIsAnsweredFromTheSessionTableWithoutExecuting() {
        var machine = Driver(clients: 1).machine
        let append = Request(client: alice, sequence: 1, command: .logAppend(entry: "a"))
        #expect(machine.apply(append) == .index(0))
        let before = machine.digest
        #expect(machine.apply(append) == .index(0))
        #expect(machine.log.retained == 0..<1)
        #expect(machine.digest == before)
    }

    @Test func aStaleRetryIsRefused() {
        var machine = Driver(clients: 1).machine
        _ = machine.apply(Request(client: alice, sequence: 1, command: .kvPut(key: "k", value: "1")))
        _ = machine.apply(Request(client: alice, sequence: 2, command: .kvPut(key: "k", value: "2")))
        #expect(machine.apply(Request(client: alice, sequence: 1, command: .kvPut(key: "k", value: "1")))
            == .failure(.staleSequence(sequence: 1, latest: 2)))
        #expect(machine.kv.get("k") == "2")
    }

    @Test func aRequestOfASessionNeverOpenedIsRefused() {
        var machine = StateMachine()
        #expect(machine.apply(Request(client: alice, sequence: 1, command: .logAppend(entry: "x"))) == .failure(.sessionExpired))
        #expect(machine.log.retained == 0..<0)
    }

    @Test func theTableIsBoundedAndARetryOfAnEvictedSessionIsNeverExecutedAgain() {
        var driver = Driver(clients: 2, limits: ServiceLimits(sessionsMax: 2))
        let bobsAppend = Request(client: bob, sequence: 1, command: .logAppend(entry: "bob"))
        #expect(driver.machine.apply(bobsAppend) == .index(0))
        #expect(driver.call(alice, .logAppend(entry: "alice")) == .index(1))
        // Bob is now the least recently active session, so a third session evicts him.
        #expect(driver.machine.apply(Request(client: ClientID(50), sequence: 1, command: .openSession)) == .session(ClientID(3)))
        #expect(driver.machine.sessions.entries.count == 2)
        #expect(driver.machine.sessions.entries[bob] == nil)
        #expect(driver.machine.apply(bobsAppend) == .failure(.sessionExpired))
        #expect(driver.machine.log.retained == 0..<2)
    }
}

@Suite struct SnapshotTests {
    private func populated() -> StateMachine {
        var driver = Driver()
        var random = SplitMix64(seed: 42)
        for step in 0..<500 {
            let client = ClientID(random.next() % 7 + 1)
            let key = "k\(random.next() % 20)"
            let command: Command = switch random.next() % 6 {
            case 0: .kvPut(key: key, value: "v\(step)")
            case 1: .kvGet(key: key)
            case 2: .lockAcquire(name: key)
            case 3: .lockRelease(name: key)
            case 4: .logAppend(entry: "e\(step)")
            default: .logTruncate(index: UInt64(step / 3))
            }
            _ = driver.call(client, command)
        }
        return driver.machine
    }

    @Test func snapshotThenRestoreGivesAnEqualDigestAndEqualState() throws {
        let machine = populated()
        let restored = try StateMachine(snapshot: machine.snapshot())
        #expect(restored.digest == machine.digest)
        #expect(restored == machine)
    }

    @Test func aRestoredReplicaBehavesLikeTheOriginal() throws {
        var original = populated()
        var restored = try StateMachine(snapshot: original.snapshot())
        let next = Request(client: ClientID(3), sequence: 1_000, command: .logAppend(entry: "after"))
        #expect(original.apply(next) == restored.apply(next))
        // The session table travels in the snapshot: a retry is still recognised after restore.
        #expect(restored.apply(next) == original.apply(next))
        #expect(original.digest == restored.digest)
    }

    @Test func equalStatesReachedInDifferentInsertionOrdersHaveEqualDigests() {
        var one = KeyValueStore(), two = KeyValueStore()
        for index in 0..<100 { one.put("k\(index)", "v") }
        for index in (0..<100).reversed() { two.put("k\(index)", "v") }
        #expect(one.digest == two.digest)
        two.put("k5", "other")
        #expect(one.digest != two.digest)
    }

    @Test func corruptSnapshotsGiveTypedErrors() {
        let bytes = populated().snapshot()
        #expect(throws: DecodeError.self) { try StateMachine(snapshot: Array(bytes.dropLast())) }
        #expect(throws: DecodeError.self) { try StateMachine(snapshot: bytes + [0]) }
        #expect(throws: DecodeError.self) { try StateMachine(snapshot: [9] + bytes.dropFirst()) }
        #expect(throws: DecodeError.self) { try StateMachine(snapshot: []) }
    }
}

@Suite struct ConflictKeyTests {
    @Test func commandsConflictOnSharedStateWhenOneWrites() {
        #expect(Command.kvPut(key: "a", value: "1").conflicts(with: .kvGet(key: "a")))
        #expect(!Command.kvGet(key: "a").conflicts(with: .kvGet(key: "a")))
        #expect(!Command.kvPut(key: "a", value: "1").conflicts(with: .kvPut(key: "b", value: "1")))
        #expect(Command.lockAcquire(name: "L").conflicts(with: .lockRelease(name: "L")))
        #expect(!Command.lockAcquire(name: "L").conflicts(with: .kvPut(key: "L", value: "x")))
        #expect(Command.logAppend(entry: "x").conflicts(with: .logRetrieve(first: 0, last: 0)))
        #expect(!Command.logRetrieve(first: 0, last: 0).conflicts(with: .logRetrieve(first: 1, last: 1)))
    }
}

@Suite struct UnsortedSnapshotTests {
    @Test func aCheckpointSnapshotRestoresTheSameStateAsACanonicalOne() throws {
        var machine = StateMachine()
        let session = ClientID(1)
        _ = machine.apply(Request(client: ClientID(1 << 63 | 5), sequence: 1, command: .openSession))
        for index in 0..<500 {
            _ = machine.apply(Request(client: session, sequence: UInt64(index + 1), command: .kvPut(key: "key\(index * 7919 % 1000)", value: "v\(index)")))
        }
        _ = machine.apply(Request(client: session, sequence: 501, command: .lockAcquire(name: "b")))
        _ = machine.apply(Request(client: session, sequence: 502, command: .lockAcquire(name: "a")))
        let restored = try StateMachine(snapshot: machine.snapshot(canonical: false))
        #expect(restored.digest == machine.digest)
        #expect(restored == machine)
    }
}

@Suite struct ShardedTableTests {
    /// A copy that takes storage of its own (`unshare`, as a checkpoint's copy does on the
    /// encoding thread) keeps its contents, and writes to either side stay on that side, whether
    /// the live table wrote before the copy unshared or after.
    @Test func anUnsharedCopyKeepsItsContentsAndBothSidesStayIndependent() {
        var live = ShardedTable<String, String>()
        for index in 0..<10_000 { live["k\(index)"] = "v\(index)" }
        let before = Dictionary(uniqueKeysWithValues: live.map { ($0.key, $0.value) })
        var copy = live
        live["k1"] = "written before unsharing"
        copy.unshare()
        live["k2"] = "written after unsharing"
        live["new"] = "added"
        #expect(Dictionary(uniqueKeysWithValues: copy.map { ($0.key, $0.value) }) == before)
        #expect(copy.count == 10_000 && live.count == 10_001)
        copy["k3"] = "the copy's own write"
        #expect(live["k3"] == "v3" && live["k1"] == "written before unsharing" && live["k2"] == "written after unsharing")
        var again = copy
        again.unshare()
        again.unshare()
        #expect(again == copy)
    }

    /// Unsharing a state machine's copy changes nothing a checkpoint encodes, and the live
    /// machine's next writes leave the copy as it was.
    @Test func unsharingAMachineKeepsItsSnapshot() {
        var harness = Driver(clients: 2)
        for index in 0..<2_000 { _ = harness.call(ClientID(1), .kvPut(key: "k\(index)", value: "v\(index)")) }
        _ = harness.call(ClientID(2), .lockAcquire(name: "l"))
        _ = harness.call(ClientID(2), .logAppend(entry: "e"))
        var copy = harness.machine
        let snapshot = copy.snapshot()
        copy.unshareTables()
        #expect(copy.snapshot() == snapshot && copy.digest == harness.machine.digest)
        _ = harness.call(ClientID(1), .kvPut(key: "k1", value: "changed"))
        #expect(copy.snapshot() == snapshot && copy.digest != harness.machine.digest)
    }

    /// Random puts and removals against a `Dictionary`: same lookups, count, contents and
    /// equality, and a copy taken along the way keeps its own contents.
    @Test(arguments: [1, 2, 3]) func randomOperationsMatchADictionary(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var table = ShardedTable<String, Int>()
        var model: [String: Int] = [:]
        var copy: (ShardedTable<String, Int>, [String: Int])?
        for step in 0..<20_000 {
            let key = "k\(random.next() % 3_000)"
            if random.next() % 4 == 0 {
                #expect(table.removeValue(forKey: key) == model.removeValue(forKey: key))
            } else {
                #expect(table.updateValue(step, forKey: key) == model.updateValue(step, forKey: key))
            }
            if step == 10_000 { copy = (table, model) }
            #expect(table[key] == model[key])
        }
        #expect(table.count == model.count)
        #expect(Dictionary(uniqueKeysWithValues: table.map { ($0.key, $0.value) }) == model)
        #expect(Set(table.keys) == Set(model.keys))
        #expect(table == ShardedTable(model))
        #expect(table.hashValue == ShardedTable(model).hashValue)
        let (oldTable, oldModel) = copy!
        #expect(oldTable.count == oldModel.count)
        #expect(Dictionary(uniqueKeysWithValues: oldTable.map { ($0.key, $0.value) }) == oldModel)
        #expect(oldTable != table)
    }
}
