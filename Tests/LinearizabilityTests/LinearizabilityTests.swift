import Linearizability
import Primitives
import Services
import Testing

let alice = ClientID(1)
let bob = ClientID(2)
let carol = ClientID(3)

/// A completed operation: invoked at `invoke` and answered with `reply` at `complete` (ns).
func completed(_ client: ClientID, _ command: Command, from invoke: UInt64, to complete: UInt64,
               replied reply: Reply) -> HistoryOperation {
    HistoryOperation(client: client, command: command, invokeNanoseconds: invoke,
                     completion: HistoryOperation.Completion(nanoseconds: complete, reply: reply))
}

/// An operation invoked at `invoke` that never got a reply.
func pending(_ client: ClientID, _ command: Command, from invoke: UInt64) -> HistoryOperation {
    HistoryOperation(client: client, command: command, invokeNanoseconds: invoke, completion: nil)
}

/// The object a violation names, or nil when the result is not a violation.
func violatedObject(_ result: LinearizabilityResult) -> String? {
    if case let .violation(object, _) = result { return object }
    return nil
}

@Suite struct KeyValueHistoryTests {
    let checker = LinearizabilityChecker()

    @Test func aStaleReadIsRejected() {
        let history = [
            completed(alice, .kvPut(key: "x", value: "1"), from: 0, to: 10, replied: .stored),
            completed(alice, .kvPut(key: "x", value: "2"), from: 20, to: 30, replied: .stored),
            completed(bob, .kvGet(key: "x"), from: 40, to: 50, replied: .value("1")),
        ]
        let result = checker.check(history)
        #expect(violatedObject(result) == "kv:x")
        if case let .violation(_, explanation) = result {
            // The explanation names the read and what the register would have answered.
            #expect(explanation.contains("kv.get \"x\""))
            #expect(explanation.contains("would reply value \"2\""))
        }
    }

    @Test func aReadOfAValueNeverWrittenIsRejected() {
        let history = [completed(bob, .kvGet(key: "x"), from: 0, to: 10, replied: .value("ghost"))]
        #expect(violatedObject(checker.check(history)) == "kv:x")
    }

    @Test func overlappingPutsMayBeSeenInEitherOrder() {
        for seen in ["1", "2"] {
            let history = [
                completed(alice, .kvPut(key: "x", value: "1"), from: 0, to: 10, replied: .stored),
                completed(bob, .kvPut(key: "x", value: "2"), from: 5, to: 15, replied: .stored),
                completed(carol, .kvGet(key: "x"), from: 20, to: 30, replied: .value(seen)),
            ]
            #expect(checker.check(history) == .linearizable)
        }
    }

    @Test func aReadOverlappingAPutMaySeeTheOldOrTheNewValue() {
        for seen: String? in [nil, "1"] {
            let history = [
                completed(alice, .kvPut(key: "x", value: "1"), from: 0, to: 20, replied: .stored),
                completed(bob, .kvGet(key: "x"), from: 10, to: 30, replied: .value(seen)),
            ]
            #expect(checker.check(history) == .linearizable)
        }
    }

    @Test func operationsThatOnlyTouchInTimeCountAsConcurrent() {
        let history = [
            completed(alice, .kvPut(key: "x", value: "1"), from: 0, to: 10, replied: .stored),
            completed(bob, .kvGet(key: "x"), from: 10, to: 20, replied: .value(nil)),
        ]
        #expect(checker.check(history) == .linearizable)
    }

    @Test func aPendingPutThatIsLaterObservedIsAccepted() {
        let history = [
            pending(alice, .kvPut(key: "x", value: "1"), from: 0),
            completed(bob, .kvGet(key: "x"), from: 10, to: 20, replied: .value("1")),
        ]
        #expect(checker.check(history) == .linearizable)
    }

    @Test func aPendingPutThatIsNeverObservedIsAccepted() {
        let history = [
            pending(alice, .kvPut(key: "x", value: "1"), from: 0),
            completed(bob, .kvGet(key: "x"), from: 10, to: 20, replied: .value(nil)),
            completed(bob, .kvGet(key: "x"), from: 30, to: 40, replied: .value(nil)),
        ]
        #expect(checker.check(history) == .linearizable)
    }

    @Test func aPendingPutCannotBeObservedBeforeItWasInvoked() {
        let history = [
            completed(bob, .kvGet(key: "x"), from: 0, to: 10, replied: .value("1")),
            pending(alice, .kvPut(key: "x", value: "1"), from: 20),
        ]
        #expect(violatedObject(checker.check(history)) == "kv:x")
    }

    @Test func aPendingPutOnceObservedCannotBeUnseen() {
        let history = [
            pending(alice, .kvPut(key: "x", value: "1"), from: 0),
            completed(bob, .kvGet(key: "x"), from: 10, to: 20, replied: .value("1")),
            completed(carol, .kvGet(key: "x"), from: 30, to: 40, replied: .value(nil)),
        ]
        #expect(violatedObject(checker.check(history)) == "kv:x")
    }

    @Test func operationsRefusedBySessionsAreIgnored() {
        let history = [
            completed(alice, .kvPut(key: "x", value: "1"), from: 0, to: 10, replied: .failure(.sessionExpired)),
            completed(alice, .kvPut(key: "x", value: "2"), from: 20, to: 30,
                      replied: .failure(.staleSequence(sequence: 1, latest: 4))),
            completed(bob, .kvGet(key: "x"), from: 40, to: 50, replied: .value(nil)),
        ]
        #expect(checker.check(history) == .linearizable)
    }

    @Test func aReplyOfTheWrongKindIsRejectedWithoutSearching() {
        let history = [completed(alice, .kvPut(key: "x", value: "1"), from: 0, to: 10, replied: .flag(true))]
        let result = checker.check(history)
        #expect(violatedObject(result) == "kv:x")
        if case let .violation(_, explanation) = result {
            #expect(explanation.contains("kv.put replies stored"))
        }
    }
}

@Suite struct LockHistoryTests {
    let checker = LinearizabilityChecker()

    @Test func aLockGrantedTwiceInSequenceIsRejected() {
        let history = [
            completed(alice, .lockAcquire(name: "L"), from: 0, to: 10, replied: .flag(true)),
            completed(bob, .lockAcquire(name: "L"), from: 20, to: 30, replied: .flag(true)),
        ]
        let result = checker.check(history)
        #expect(violatedObject(result) == "lock:L")
        if case let .violation(_, explanation) = result {
            #expect(explanation.contains("held by c1"))
        }
    }

    @Test func aLockGrantedTwiceConcurrentlyIsRejected() {
        let history = [
            completed(alice, .lockAcquire(name: "L"), from: 0, to: 10, replied: .flag(true)),
            completed(bob, .lockAcquire(name: "L"), from: 5, to: 15, replied: .flag(true)),
        ]
        #expect(violatedObject(checker.check(history)) == "lock:L")
    }

    @Test func concurrentAcquiresWhereExactlyOneWinsAreAccepted() {
        for winnerIsAlice in [true, false] {
            let history = [
                completed(alice, .lockAcquire(name: "L"), from: 0, to: 10, replied: .flag(winnerIsAlice)),
                completed(bob, .lockAcquire(name: "L"), from: 0, to: 10, replied: .flag(!winnerIsAlice)),
            ]
            #expect(checker.check(history) == .linearizable)
        }
    }

    @Test func aLockPassesOnAfterARelease() {
        let history = [
            completed(alice, .lockAcquire(name: "L"), from: 0, to: 10, replied: .flag(true)),
            completed(alice, .lockAcquire(name: "L"), from: 12, to: 14, replied: .flag(true)),
            completed(bob, .lockRelease(name: "L"), from: 15, to: 18, replied: .flag(false)),
            completed(alice, .lockRelease(name: "L"), from: 20, to: 30, replied: .flag(true)),
            completed(bob, .lockAcquire(name: "L"), from: 40, to: 50, replied: .flag(true)),
        ]
        #expect(checker.check(history) == .linearizable)
    }

    @Test func aPendingReleaseMayFreeTheLock() {
        let history = [
            completed(alice, .lockAcquire(name: "L"), from: 0, to: 10, replied: .flag(true)),
            pending(alice, .lockRelease(name: "L"), from: 20),
            completed(bob, .lockAcquire(name: "L"), from: 30, to: 40, replied: .flag(false)),
            completed(bob, .lockAcquire(name: "L"), from: 50, to: 60, replied: .flag(true)),
        ]
        #expect(checker.check(history) == .linearizable)
    }

    @Test func differentLocksAreIndependentObjects() {
        let history = [
            completed(alice, .lockAcquire(name: "A"), from: 0, to: 10, replied: .flag(true)),
            completed(bob, .lockAcquire(name: "B"), from: 20, to: 30, replied: .flag(true)),
        ]
        #expect(LinearizabilityChecker().checkAll(history) == ["lock:A": .linearizable, "lock:B": .linearizable])
    }
}

@Suite struct LogHistoryTests {
    let checker = LinearizabilityChecker()

    @Test func aReorderedLogIsRejected() {
        let history = [
            completed(alice, .logAppend(entry: "a"), from: 0, to: 10, replied: .index(1)),
            completed(bob, .logAppend(entry: "b"), from: 20, to: 30, replied: .index(0)),
        ]
        #expect(violatedObject(checker.check(history)) == "log")
    }

    @Test func aLostEntryReadBackAsAnotherIsRejected() {
        let history = [
            completed(alice, .logAppend(entry: "a"), from: 0, to: 10, replied: .index(0)),
            completed(bob, .logRetrieve(first: 0, last: 0), from: 20, to: 30, replied: .entries(first: 0, ["b"])),
        ]
        #expect(violatedObject(checker.check(history)) == "log")
    }

    @Test func aLostEntryReportedOutOfRangeIsRejected() {
        let history = [
            completed(alice, .logAppend(entry: "a"), from: 0, to: 10, replied: .index(0)),
            completed(bob, .logRetrieve(first: 0, last: 0), from: 20, to: 30,
                      replied: .failure(.outOfRange(first: 0, last: 0, available: 0..<0))),
        ]
        let result = checker.check(history)
        #expect(violatedObject(result) == "log")
        if case let .violation(_, explanation) = result {
            #expect(explanation.contains("would reply entries from 0 [\"a\"]"))
            #expect(explanation.contains("c1 log.append \"a\" (invoked 0 ns, completed 10 ns, replied index 0)"))
        }
    }

    @Test func concurrentAppendsMayTakeEitherIndex() {
        for aFirst in [true, false] {
            let history = [
                completed(alice, .logAppend(entry: "a"), from: 0, to: 10, replied: .index(aFirst ? 0 : 1)),
                completed(bob, .logAppend(entry: "b"), from: 5, to: 15, replied: .index(aFirst ? 1 : 0)),
                completed(carol, .logRetrieve(first: 0, last: 1), from: 20, to: 30,
                          replied: .entries(first: 0, aFirst ? ["a", "b"] : ["b", "a"])),
            ]
            #expect(checker.check(history) == .linearizable)
        }
    }

    @Test func truncatedEntriesAreOutOfRange() {
        let history = [
            completed(alice, .logAppend(entry: "a"), from: 0, to: 10, replied: .index(0)),
            completed(alice, .logAppend(entry: "b"), from: 20, to: 30, replied: .index(1)),
            completed(bob, .logTruncate(index: 1), from: 40, to: 50, replied: .flag(true)),
            completed(carol, .logRetrieve(first: 0, last: 1), from: 60, to: 70,
                      replied: .failure(.outOfRange(first: 0, last: 1, available: 1..<2))),
            completed(carol, .logRetrieve(first: 1, last: 1), from: 80, to: 90, replied: .entries(first: 1, ["b"])),
            completed(bob, .logTruncate(index: 5), from: 100, to: 110, replied: .flag(false)),
            completed(alice, .logAppend(entry: "c"), from: 120, to: 130, replied: .index(2)),
        ]
        #expect(checker.check(history) == .linearizable)
    }

    @Test func retrieveArgumentErrorsMatchTheService() {
        let history = [
            completed(alice, .logRetrieve(first: 3, last: 2), from: 0, to: 10,
                      replied: .failure(.emptyRange(first: 3, last: 2))),
            completed(alice, .logRetrieve(first: 0, last: UInt64.max), from: 20, to: 30,
                      replied: .failure(.rangeTooLong(requested: UInt64.max, limit: 1024))),
            completed(alice, .logRetrieve(first: 0, last: 1024), from: 40, to: 50,
                      replied: .failure(.rangeTooLong(requested: 1025, limit: 1024))),
        ]
        #expect(checker.check(history) == .linearizable)
        let wrongLimit = [completed(alice, .logRetrieve(first: 0, last: 1024), from: 0, to: 10,
                                    replied: .failure(.rangeTooLong(requested: 1025, limit: 2048)))]
        #expect(violatedObject(checker.check(wrongLimit)) == "log")
    }

    @Test func aPendingAppendMayBeObservedOrNot() {
        for observed in [true, false] {
            let history = [
                pending(alice, .logAppend(entry: "a"), from: 0),
                completed(bob, .logAppend(entry: "b"), from: 10, to: 20, replied: .index(observed ? 1 : 0)),
            ]
            #expect(checker.check(history) == .linearizable)
        }
    }
}

@Suite struct CheckerTests {
    @Test func theFirstViolationInObjectNameOrderIsReported() {
        let history = [
            completed(bob, .kvGet(key: "b"), from: 0, to: 10, replied: .value("never")),
            completed(bob, .kvGet(key: "a"), from: 0, to: 10, replied: .value("never")),
            completed(alice, .kvPut(key: "c", value: "1"), from: 0, to: 10, replied: .stored),
            completed(alice, .openSession, from: 0, to: 10, replied: .session(alice)),
        ]
        let checker = LinearizabilityChecker()
        #expect(violatedObject(checker.check(history)) == "kv:a")
        let results = checker.checkAll(history)
        #expect(results.keys.sorted() == ["kv:a", "kv:b", "kv:c"])
        #expect(results["kv:c"] == .linearizable)
        #expect(violatedObject(results["kv:b"]!) == "kv:b")
    }

    @Test func anEmptyHistoryIsLinearizable() {
        #expect(LinearizabilityChecker().check([]) == .linearizable)
        #expect(LinearizabilityChecker().checkAll([]).isEmpty)
    }

    @Test func theSearchBoundGivesUndecidedInsteadOfSearchingOn() {
        // Twelve concurrent puts followed by a read of a value nobody wrote: unsatisfiable, but
        // proving it means trying every subset of the puts, far more than ten states.
        var history = (0..<12).map { writer in
            completed(ClientID(UInt64(writer + 1)), .kvPut(key: "x", value: "\(writer)"), from: 0, to: 10, replied: .stored)
        }
        history.append(completed(alice, .kvGet(key: "x"), from: 20, to: 30, replied: .value("none of them")))
        let bounded = LinearizabilityChecker(searchStatesMax: 10).check(history)
        guard case let .undecided(object, reason) = bounded else {
            Issue.record("expected undecided, got \(bounded)")
            return
        }
        #expect(object == "kv:x")
        #expect(reason.contains("searchStatesMax 10"))
        #expect(violatedObject(LinearizabilityChecker().check(history)) == "kv:x")
    }

    @Test func aViolationAnywhereOutranksAnUndecidedObject() {
        var history = (0..<12).map { writer in
            completed(ClientID(UInt64(writer + 1)), .kvPut(key: "x", value: "\(writer)"), from: 0, to: 10, replied: .stored)
        }
        history.append(completed(alice, .kvGet(key: "x"), from: 20, to: 30, replied: .value("none of them")))
        history.append(completed(alice, .kvGet(key: "y"), from: 20, to: 30, replied: .value("never")))
        #expect(violatedObject(LinearizabilityChecker(searchStatesMax: 10).check(history)) == "kv:y")
    }
}
