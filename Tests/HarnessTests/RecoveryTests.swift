import Foundation
import Paxos
import Primitives
import Runtime
import Services
import Storage
import Testing

/// A replica's state survives a restart from real files: its checkpoint, then its log.
@Suite struct RecoveryTests {
    private let config: PaxosConfig = {
        var config = PaxosConfig(replicaCount: 1, mode: .multiLeader)
        config.batchCommandsMax = 4
        return config
    }()

    private func open(_ directory: String) throws -> (FileReplicaStorage, RecoveredState) {
        try FileReplicaStorage.open(directory: directory, mode: .write, segmentBytesMax: 1 << 16, onDurable: { _ in }, onFailure: { _ in })
    }

    @Test func aCheckpointAndTheLogAfterItRestoreAnEqualState() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("csmr-recovery-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var (storage, recovered) = try open(directory)
        var node = try ReplicaNode.recover(config: config, id: ReplicaID(0), now: .zero, storage: storage, recovered: recovered,
                                           checkpointIntervalSlots: 10)
        let client = ClientID(7)
        var session: ClientID?
        let opened = node.clientRequest(Request(client: client, sequence: 1, command: .openSession), now: .zero)
        for reply in opened.effects(durablePosition: storage.durablePosition).replies {
            if case let .session(id) = reply.reply { session = id }
        }
        let id = try #require(session)
        for sequence in 1...57 {
            let output = node.clientRequest(Request(client: id, sequence: UInt64(sequence), command: .kvPut(key: "k\(sequence % 9)", value: "v\(sequence)")),
                                            now: Instant(nanoseconds: UInt64(sequence) * 1_000))
            #expect(output.effects(durablePosition: storage.durablePosition).replies.count == 1)
        }
        let before = node.machine.digest
        let delivered = node.core.deliveredBelow
        #expect(delivered == 58)
        try storage.close()

        (storage, recovered) = try open(directory)
        let checkpoint = try #require(recovered.checkpoint)
        #expect(checkpoint.slot == 50)
        #expect(!recovered.records.isEmpty)
        node = try ReplicaNode.recover(config: config, id: ReplicaID(0), now: Instant(nanoseconds: 1_000_000), storage: storage,
                                       recovered: recovered, checkpointIntervalSlots: 10)
        #expect(node.core.deliveredBelow == 50)
        // It leads its sublog again after phase 1, and decides again what it had accepted.
        var now = Instant(nanoseconds: 1_000_000)
        for _ in 0..<200 where node.core.deliveredBelow < delivered {
            now = Instant(nanoseconds: now.nanoseconds + 5_000_000)
            _ = node.tick(now: now)
        }
        #expect(node.core.deliveredBelow == delivered)
        #expect(node.machine.digest == before)
        try storage.close()
    }
}
