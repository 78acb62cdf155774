import CSMRClient
import NIOPosix
import Testing

/// docs/protocol.md's example, line for line, but for the ports and the cluster name of the test
/// group, and returning what it printed.
private func example(cluster name: String, ports: [Int]) async throws -> [String] {
    var printed: [String] = []
    let cluster = ClusterEndpoints(cluster: name, ports: ports)
    let client = try await CSMRClient.connect(cluster: cluster)
    try await client.kv.put("greeting", "hello")
    let greeting = try await client.kv.get("greeting")
    if try await client.lock.acquire("printer") {
        let index = try await client.log.append("printed \(greeting ?? "nothing")")
        printed.append("\(index) \(try await client.log.retrieve(index...index))")
        _ = try await client.lock.release("printer")
    }
    await client.close()
    return printed
}

@Suite struct ExampleTests {
    @Test func theProtocolPagesExampleRuns() async throws {
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let group = try await TestGroup.start(replicas: 3, loop: loops.next())
        let printed: Result<[String], any Error>
        do { printed = .success(try await example(cluster: TestGroup.cluster.name, ports: group.ports)) } catch { printed = .failure(error) }
        try await group.stopAll()
        try await loops.shutdownGracefully()
        #expect(try printed.get() == ["0 [\"printed hello\"]"])
    }
}
