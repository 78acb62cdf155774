import Foundation
import Paxos
import Primitives
import Runtime
import Services
import Testing
@testable import Execution

/// Outcomes as the executor's lane hands them back, and a gate the test holds the lane at.
private final class Lane: @unchecked Sendable {
    private let lock = NSCondition()
    private var outcomes: [ExecutionOutcome] = []
    private var released = false

    func arrived(_ outcome: ExecutionOutcome, holdUntilReleased: Bool) {
        lock.lock()
        outcomes.append(outcome)
        lock.broadcast()
        while holdUntilReleased, !released { lock.wait() }
        lock.unlock()
    }

    func release() {
        lock.lock()
        released = true
        lock.broadcast()
        lock.unlock()
    }

    /// Waits (at most 60 s) until `count` outcomes arrived; returns them in arrival order.
    func waitFor(_ count: Int) -> [ExecutionOutcome] {
        lock.lock()
        defer { lock.unlock() }
        let deadline = Date().addingTimeInterval(60)
        while outcomes.count < count, lock.wait(until: deadline) {}
        return outcomes
    }
}

@Suite struct OffLoopExecutionTests {
    private let config: PaxosConfig = {
        var config = PaxosConfig(replicaCount: 1, mode: .multiLeader)
        config.batchCommandsMax = 4
        return config
    }()

    /// A replica goes on with consensus while its executor runs a batch: while the executor's
    /// lane is held inside the first job, later requests are proposed, decided and delivered, a
    /// retry of a request still waiting to execute goes to consensus again, and a checkpoint is
    /// claimed. No reply leaves before its job completes; then every request is answered once,
    /// with sequential execution's reply, in order per client; the checkpoint holds the state
    /// after exactly the slots it claims; the final state equals sequential execution's.
    @Test(arguments: [SchedulerKind.early, .graph])
    func consensusGoesOnWhileABatchExecutes(scheduler: SchedulerKind) throws {
        let execution = ExecutionConfig(scheduler: scheduler, workers: 2, partitions: 8, spinIterationsPerCommand: 2_000)
        var node = ReplicaNode(core: PaxosReplica(config: config, id: ReplicaID(0), now: .zero), storage: MemoryStorage(),
                               digestIntervalSlots: 4, execution: execution)
        node.executesInline = false
        var now = Instant.zero
        func advance() -> Instant {
            now = Instant(nanoseconds: now.nanoseconds + 1_000)
            return now
        }

        // A session, executed synchronously (a driver may run a job on any thread).
        let opened = node.clientRequest(Request(client: ClientID(77), sequence: 1, command: .openSession), now: advance())
        #expect(opened.pendingEffects.replies.isEmpty)
        #expect(opened.executions.count == 1)
        let sessionReply = node.executed(opened.executions[0].run(), now: advance())
        guard case let .session(client)? = sessionReply.effects(durablePosition: node.storage.durablePosition).replies.first?.reply else {
            Issue.record("no session reply: \(sessionReply.pendingEffects.replies)")
            return
        }

        let lane = Lane()
        var jobs: [ExecutionJob] = []
        var delivered: [Delivery] = []
        func submit(_ request: Request) {
            let output = node.clientRequest(request, now: advance())
            // Replies come only from completed jobs (or the session table, for a finished request).
            #expect(output.pendingEffects.replies.isEmpty, "a reply left before its batch executed")
            #expect(output.deliveries.isEmpty)
            for job in output.executions {
                let holds = jobs.isEmpty
                job.runOnLane { lane.arrived($0, holdUntilReleased: holds) }
                jobs.append(job)
            }
        }
        let keys = ["a", "b", "c", "a", "d", "a", "e", "b"]
        for sequence in UInt64(1)...6 {
            submit(Request(client: client, sequence: sequence, command: .kvPut(key: keys[Int(sequence) % keys.count], value: "v\(sequence)")))
        }
        // The lane is held inside the first job: consensus keeps going meanwhile.
        _ = lane.waitFor(1)
        #expect(node.isExecuting)
        let deliveredWhileHeld = node.core.deliveredBelow
        for sequence in UInt64(7)...20 {
            let command: Command = sequence % 5 == 0 ? .logAppend(entry: "e\(sequence)") : .kvPut(key: keys[Int(sequence) % keys.count], value: "v\(sequence)")
            submit(Request(client: client, sequence: sequence, command: command))
        }
        #expect(node.core.deliveredBelow > deliveredWhileHeld, "no slot was delivered while a batch executed")
        // A retry of a request that has not executed yet is not in the session table: it goes to
        // consensus again, and is answered once.
        submit(Request(client: client, sequence: 20, command: .logAppend(entry: "e20")))
        let claimedSlot = node.core.deliveredBelow
        let checkpointOutput = node.checkpointNow(now: advance())
        #expect(checkpointOutput.checkpoints.isEmpty, "a checkpoint completed before execution reached its slot")
        for job in checkpointOutput.executions {
            job.runOnLane { lane.arrived($0, holdUntilReleased: false) }
            jobs.append(job)
        }
        submit(Request(client: client, sequence: 21, command: .kvGet(key: "a")))
        #expect(lane.waitFor(1).count == 1, "the lane ran on while held")
        lane.release()

        let outcomes = lane.waitFor(jobs.count)
        #expect(outcomes.count == jobs.count)
        #expect(outcomes.map(\.number) == jobs.map(\.number))
        var replies: [ClientReply] = []
        var checkpoints: [UInt64] = []
        for outcome in outcomes {
            let output = node.executed(outcome, now: advance())
            replies += output.effects(durablePosition: node.storage.durablePosition).replies
            delivered += output.deliveries
            checkpoints += output.checkpoints
        }
        #expect(!node.isExecuting)
        #expect(checkpoints == [claimedSlot])

        // The reference: the delivered slots applied one by one on a state machine.
        var reference = StateMachine()
        _ = reference.apply(Request(client: ClientID(77), sequence: 1, command: .openSession))
        var expected: [UInt64: Reply] = [:]
        var digestAtClaim: Digest?
        #expect(delivered.map(\.slot) == Array(delivered.first!.slot..<(delivered.first!.slot + UInt64(delivered.count))))
        for delivery in delivered {
            if case let .batch(requests) = delivery.value {
                for request in requests {
                    let reply = reference.apply(request)
                    if expected[request.sequence] == nil { expected[request.sequence] = reply }
                }
            }
            if delivery.slot + 1 == claimedSlot { digestAtClaim = reference.digest }
        }
        #expect(replies.map(\.sequence) == Array(1...21), "every request answered once, in order")
        for reply in replies { #expect(reply.reply == expected[reply.sequence], "sequence \(reply.sequence)") }
        #expect(node.machine.digest == reference.digest)

        let checkpoint = try #require(node.storage.newestCheckpoint)
        #expect(checkpoint.slot == claimedSlot)
        let payload = try CheckpointPayload.decode(checkpoint.bytes)
        #expect(try StateMachine(snapshot: payload.machine).digest == digestAtClaim)
    }

    /// With a sequential executor, or `executesInline`, nothing is handed out: the same input
    /// executes and answers.
    @Test func sequentialExecutionStaysInline() {
        for execution in [ExecutionConfig(), ExecutionConfig(scheduler: .graph, workers: 2)] {
            var node = ReplicaNode(core: PaxosReplica(config: config, id: ReplicaID(0), now: .zero), storage: MemoryStorage(), execution: execution)
            node.executesInline = execution.scheduler == .sequential ? false : true
            let output = node.clientRequest(Request(client: ClientID(5), sequence: 1, command: .openSession), now: .zero)
            #expect(output.executions.isEmpty)
            #expect(output.pendingEffects.replies.count == 1)
        }
    }
}
