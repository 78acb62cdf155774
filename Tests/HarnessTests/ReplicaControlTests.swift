import Harness
import Testing

/// The control file a harness writes to partition `csmr replica` processes, and the cut it
/// computes from a workload's sides.
struct ReplicaControlTests {
    @Test func aControlFileRoundTripsAndAnEmptyListHeals() throws {
        for peers: Set<Int> in [[], [1], [0, 2, 4]] {
            let control = ReplicaControl(blockedPeers: peers)
            #expect(try ReplicaControl.parse(control.text, file: "c", replica: 3, replicas: 5) == control)
        }
        #expect(try ReplicaControl.parse("# note\n\nblocked:\n", file: "c", replica: 0, replicas: 3).blockedPeers.isEmpty)
    }

    @Test(arguments: [
        ("blocked: 0\n", "c:1: \"0\" is not a peer of replica 0 (ids 0 to 2, not its own)"),
        ("blocked: 3\n", "c:1: \"3\" is not a peer of replica 0 (ids 0 to 2, not its own)"),
        ("blocked: -1\n", "c:1: \"-1\" is not a peer of replica 0 (ids 0 to 2, not its own)"),
        ("# x\nblock: 1\n", "c:2: expected \"blocked:\" and peer ids, got \"block: 1\""),
        ("blocked: 1\nblocked: 2\n", "c:2: a second \"blocked:\" line"),
        ("", "c: no \"blocked:\" line"),
    ])
    func aMalformedControlFileIsAnErrorNamingTheLine(text: String, message: String) {
        #expect(throws: ControlFileError.self) { try ReplicaControl.parse(text, file: "c", replica: 0, replicas: 3) }
        do {
            _ = try ReplicaControl.parse(text, file: "c", replica: 0, replicas: 3)
        } catch {
            #expect(error.description == message)
        }
    }

    @Test func aPartitionCutsEveryPairAcrossSidesAndLeavesAnUnnamedReplicaConnected() {
        #expect(ProcessCluster.blockedPeers(sides: [[2], [0, 1]], replicas: 3) == [[2], [2], [0, 1]])
        // Replica 4 is on no side: it still reaches everyone, as in the in-process cluster.
        #expect(ProcessCluster.blockedPeers(sides: [[0], [1], [2, 3]], replicas: 5) == [[1, 2, 3], [0, 2, 3], [0, 1], [0, 1], []])
    }
}
