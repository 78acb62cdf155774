import Composition
import Linearizability
import Paxos
import Primitives
import Services
@testable import Simulation
import Testing

/// The simulated disk gives the durability of a real one and no more.
@Suite struct SimulatedDiskTests {
    static let promise = PersistRecord.promised(sublog: 0, ballot: Ballot(round: 1, replica: ReplicaID(1)))
    static let other = PersistRecord.promised(sublog: 0, ballot: Ballot(round: 2, replica: ReplicaID(2)))

    @Test func aRecordIsDurableOnlyOnceItsSyncCompletes() {
        let disk = SimulatedDisk(profile: DiskProfile(), seed: 1)
        disk.persist([Self.promise])
        disk.commit()
        #expect(disk.appendedPosition == 1 && disk.durablePosition == 0)
        let started = disk.takeStarted(nowMicroseconds: 0)
        #expect(started.count == 1)
        #expect(disk.complete(started[0].completion) == 1)
    }

    @Test func commitsDuringASyncShareTheNextOne() {
        let disk = SimulatedDisk(profile: DiskProfile(), seed: 1)
        disk.persist([Self.promise])
        disk.commit()
        let first = disk.takeStarted(nowMicroseconds: 0)
        for _ in 0..<5 {
            disk.persist([Self.other])
            disk.commit()
        }
        #expect(disk.takeStarted(nowMicroseconds: 0).isEmpty)
        #expect(disk.complete(first[0].completion) == 1)
        let second = disk.takeStarted(nowMicroseconds: 0)
        #expect(second.count == 1)
        #expect(disk.complete(second[0].completion) == 6)
        #expect(disk.syncs == 2)
    }

    @Test func aCrashLosesWhatWasNotSyncedAndCutsATornRecord() {
        var profile = DiskProfile()
        profile.tornWriteProbability = 1
        let disk = SimulatedDisk(profile: profile, seed: 3)
        disk.persist([Self.promise])
        disk.commit()
        _ = disk.complete(disk.takeStarted(nowMicroseconds: 0)[0].completion)
        disk.persist([Self.other, Self.other])
        disk.commit()
        let (recovered, lost, torn) = disk.crash()
        #expect(recovered.records == [Self.promise])
        #expect(lost == 2)
        #expect(torn != nil)
        #expect(disk.appendedPosition == 1 && disk.durablePosition == 1)
    }

    @Test func aCheckpointIsLostUntilItsWriteCompletesAndThePreviousOneStays() {
        let disk = SimulatedDisk(profile: DiskProfile(), seed: 4)
        disk.persist([Self.promise])
        disk.commit()
        _ = disk.complete(disk.takeStarted(nowMicroseconds: 0)[0].completion)
        disk.saveCheckpoint(Checkpoint(slot: 4, position: 1, bytes: [4]))
        _ = disk.complete(disk.takeStarted(nowMicroseconds: 0)[0].completion)
        disk.persist([Self.other])
        disk.saveCheckpoint(Checkpoint(slot: 8, position: 2, bytes: [8]))
        #expect(disk.newestCheckpoint?.slot == 8)
        let (recovered, _, _) = disk.crash()
        #expect(recovered.checkpoint?.slot == 4)
        #expect(recovered.records.isEmpty)
        #expect(disk.newestCheckpoint?.slot == 4)
    }
}

/// The acknowledged-write checker sees lost and stale writes, and accepts overwrites and truncations.
@Suite struct AcknowledgedWriteCheckerTests {
    static let router = Router(spec: SimulationOptions(seed: 1).groupSpec)
    static let session = ClientID(7)

    static func put(_ value: String, at invoked: UInt64, acknowledged: UInt64?) -> HistoryOperation {
        HistoryOperation(client: session, command: .kvPut(key: "k", value: value), invokeNanoseconds: invoked,
                         completion: acknowledged.map { .init(nanoseconds: $0, reply: .stored) })
    }

    static func machine(_ requests: [Command]) -> StateMachine {
        var machine = StateMachine()
        let session: ClientID
        guard case let .session(id) = machine.apply(Request(client: ClientID(1 << 48), sequence: 1, command: .openSession)) else {
            preconditionFailure("no session")
        }
        session = id
        for (index, command) in requests.enumerated() { _ = machine.apply(Request(client: session, sequence: UInt64(index + 1), command: command)) }
        return machine
    }

    @Test func anAcknowledgedPutMissingFromAReplicaIsReported() {
        let history = [Self.put("c0#1", at: 0, acknowledged: 10)]
        let violations = AcknowledgedWriteChecker.check(history: history, router: Self.router, machines: [[Self.machine([]), Self.machine([.kvPut(key: "k", value: "c0#1")])]])
        #expect(violations.count == 1)
        #expect(violations.first?.contains("r0") == true)
    }

    @Test func anOlderValueAfterAnAcknowledgedPutIsStale() {
        let history = [Self.put("c0#1", at: 0, acknowledged: 10), Self.put("c0#2", at: 20, acknowledged: 30)]
        let stale = AcknowledgedWriteChecker.check(history: history, router: Self.router, machines: [[Self.machine([.kvPut(key: "k", value: "c0#1")])]])
        #expect(stale.count == 1)
        let current = AcknowledgedWriteChecker.check(history: history, router: Self.router, machines: [[Self.machine([.kvPut(key: "k", value: "c0#2")])]])
        #expect(current.isEmpty)
    }

    @Test func aConcurrentUnacknowledgedPutMayOverwrite() {
        let history = [Self.put("c0#1", at: 0, acknowledged: 10), Self.put("c1#1", at: 5, acknowledged: nil)]
        let violations = AcknowledgedWriteChecker.check(history: history, router: Self.router, machines: [[Self.machine([.kvPut(key: "k", value: "c1#1")])]])
        #expect(violations.isEmpty)
    }

    @Test func anAcknowledgedAppendMustStayUnlessTruncated() {
        let append = HistoryOperation(client: Self.session, command: .logAppend(entry: "c0#1"), invokeNanoseconds: 0,
                                      completion: .init(nanoseconds: 10, reply: .index(0)))
        let lost = AcknowledgedWriteChecker.check(history: [append], router: Self.router, machines: [[Self.machine([.logAppend(entry: "c9#9")])]])
        #expect(lost.count == 1)
        let truncate = HistoryOperation(client: Self.session, command: .logTruncate(index: 1), invokeNanoseconds: 20,
                                        completion: .init(nanoseconds: 30, reply: .flag(true)))
        let truncated = AcknowledgedWriteChecker.check(history: [append, truncate], router: Self.router,
                                                       machines: [[Self.machine([.logAppend(entry: "c0#1"), .logTruncate(index: 1)])]])
        #expect(truncated.isEmpty)
    }
}
