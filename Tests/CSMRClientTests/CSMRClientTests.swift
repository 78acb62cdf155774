import CSMRClient
import Composition
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Primitives
import Services
import Testing
import Transport
import Wire

/// Starts servers and a client, runs `body`, and always closes the client, stops every server
/// and shuts the servers' event loop down, whatever `body` does.
private func withCluster(replicas: Int = 3, options: CSMRClientOptions = fastOptions(),
                         _ body: (TestGroup, CSMRClient) async throws -> Void) async throws {
    let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    var failure: (any Error)?
    do {
        let group = try await TestGroup.start(replicas: replicas, loop: loops.next())
        do {
            let client = try await CSMRClient.connect(cluster: ClusterEndpoints(cluster: TestGroup.cluster.name, ports: group.ports),
                                                      options: options)
            do { try await body(group, client) } catch { failure = error }
            await client.close()
        } catch { failure = failure ?? error }
        try await group.stopAll()
    } catch { failure = failure ?? error }
    try await loops.shutdownGracefully()
    if let failure { throw failure }
}

private func fastOptions(sessions: Int = 4) -> CSMRClientOptions {
    var options = CSMRClientOptions()
    options.sessions = sessions
    options.retryTimeout = .milliseconds(50)
    options.callTimeout = .seconds(10)
    options.tickInterval = .milliseconds(2)
    options.nonceSeed = 42
    return options
}

@Suite(.serialized) struct CSMRClientTests {
    @Test func anEmulatedLinkDelayIsPaidByTheRequestAndByTheReply() async throws {
        var options = fastOptions(sessions: 1)
        options.retryTimeout = .seconds(2)
        options.linkDelayMicroseconds = [[40_000]]
        try await withCluster(replicas: 1, options: options) { _, client in
            try await client.kv.put("k", "v")
            let start = ContinuousClock.now
            #expect(try await client.kv.get("k") == "v")
            let elapsed = ContinuousClock.now - start
            #expect(elapsed >= .milliseconds(80), "a call over a 40 ms link took \(elapsed)")
        }
    }

    @Test func everyServiceAnswersThroughTheClient() async throws {
        try await withCluster { _, client in
            try await client.kv.put("k", "v")
            #expect(try await client.kv.get("k") == "v")
            #expect(try await client.kv.get("missing") == nil)
            #expect(try await client.lock.acquire("L"))
            #expect(try await client.lock.release("L"))
            #expect(try await client.lock.release("L") == false)
            #expect(try await client.log.append("a") == 0)
            #expect(try await client.log.append("b") == 1)
            #expect(try await client.log.retrieve(0...1) == ["a", "b"])
            #expect(try await client.log.truncate(below: 1))
            await #expect(throws: CSMRClientError.refused(.outOfRange(first: 0, last: 1, available: 1..<2))) {
                try await client.log.retrieve(0...1)
            }
        }
    }

    @Test func extensionStepsAndSessionOpeningsAreNotClientCalls() async throws {
        try await withCluster { _, client in
            let step = Command.logAppendFrom(origin: 0, index: 1, entry: "forged")
            await #expect(throws: CSMRClientError.notAClientCommand(step)) { try await client.execute(step) }
            await #expect(throws: CSMRClientError.notAClientCommand(.openSession)) { try await client.execute(.openSession) }
        }
    }

    @Test func manyCallsInFlightShareOneConnectionPerReplicaAndEachExecutesOnce() async throws {
        try await withCluster(options: fastOptions(sessions: 8)) { group, client in
            let count = 300
            let indices = try await withThrowingTaskGroup(of: (Int, UInt64).self) { tasks in
                for call in 0..<count { tasks.addTask { (call, try await client.log.append("e\(call)")) } }
                var indices: [Int: UInt64] = [:]
                for try await (call, index) in tasks { indices[call] = index }
                return indices
            }
            let log = group.machine.withLockedValue { Array($0.log.entries) }
            #expect(log.count == count)
            #expect(Set(indices.values).count == count)
            for (call, index) in indices { #expect(log[Int(index)] == "e\(call)") }
            // Eight sessions, but no more connections than replicas.
            for server in group.servers { #expect(try await server.counters().get().count <= 1) }
        }
    }

    @Test func aReplicaThatDiesAfterExecutingIsRetriedElsewhereExactlyOnce() async throws {
        try await withCluster(options: fastOptions(sessions: 6)) { group, client in
            // Sessions start at replicas 0, 1, 2, 0, 1, 2. Once they are open (six calls at once
            // take one session each), replica 0 executes and never answers, then is stopped
            // mid-run: its sessions' retries reach replica 1, which answers from the shared
            // session table instead of executing again.
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for call in 0..<6 { tasks.addTask { try await client.kv.put("warm-up \(call)", "") } }
                try await tasks.waitForAll()
            }
            group.set(.executeSilently, replica: 0)
            let count = 120
            let indices = try await withThrowingTaskGroup(of: (Int, UInt64).self) { tasks in
                for call in 0..<count {
                    tasks.addTask { (call, try await client.log.append("e\(call)")) }
                }
                var indices: [Int: UInt64] = [:]
                for try await (call, index) in tasks {
                    indices[call] = index
                    if indices.count == count / 3 { try await group.stop(replica: 0) }
                }
                return indices
            }
            let log = group.machine.withLockedValue { Array($0.log.entries) }
            #expect(group.received[0].withLockedValue { $0 } > 0, "replica 0 took part before it died")
            #expect(group.duplicates.withLockedValue { $0 } > 0, "some retries found their request executed")
            #expect(log.count == count, "each append executed exactly once")
            #expect(Set(log).count == count)
            for (call, index) in indices { #expect(log[Int(index)] == "e\(call)") }
            // The cluster keeps serving without replica 0.
            try await client.kv.put("after", "yes")
            #expect(try await client.kv.get("after") == "yes")
        }
    }

    @Test func aLostConnectionMovesCallsOnWithoutWaitingForTheRetryTimeout() async throws {
        var options = fastOptions(sessions: 3)
        options.retryTimeout = .seconds(30)
        try await withCluster(options: options) { group, client in
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for call in 0..<3 { tasks.addTask { try await client.kv.put("warm-up \(call)", "") } }
                try await tasks.waitForAll()
            }
            // Replica 0 swallows requests, then goes away: the broken connection, not the
            // 30-second timeout, sends its requests on.
            group.set(.ignore, replica: 0)
            let clock = ContinuousClock()
            let start = clock.now
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for call in 0..<30 { tasks.addTask { _ = try await client.log.append("e\(call)", timeout: .seconds(5)) } }
                try await Task.sleep(for: .milliseconds(50))
                try await group.stop(replica: 0)
                try await tasks.waitForAll()
            }
            #expect(clock.now - start < .seconds(5))
            #expect(group.machine.withLockedValue { $0.log.count } == 30)
        }
    }

    @Test func aRedirectSendsTheRequestToTheNamedReplica() async throws {
        try await withCluster(options: fastOptions(sessions: 1)) { group, client in
            group.set(.redirect(to: 2), replica: 0)
            group.set(.ignore, replica: 1)
            try await client.kv.put("k", "v")
            #expect(group.received[1].withLockedValue { $0 } == 0, "the redirect skipped replica 1")
            #expect(group.received[2].withLockedValue { $0 } >= 1)
        }
    }

    @Test func aCallTimesOutWhenNoReplicaAnswers() async throws {
        try await withCluster(options: fastOptions(sessions: 1)) { group, client in
            // Before the session opens, nothing is sent but the opening.
            for replica in 0..<3 { group.set(.ignore, replica: replica) }
            await #expect(throws: CSMRClientError.timedOut(sent: false)) {
                try await client.kv.put("k", "v", timeout: .milliseconds(100))
            }
            for replica in 0..<3 { group.set(.serve, replica: replica) }
            try await client.kv.put("k", "v")
            for replica in 0..<3 { group.set(.ignore, replica: replica) }
            await #expect(throws: CSMRClientError.timedOut(sent: true)) {
                try await client.kv.put("k", "v", timeout: .milliseconds(200))
            }
            for replica in 0..<3 { group.set(.serve, replica: replica) }
            // The timed-out sequence is not reused: the next call goes through.
            try await client.kv.put("k", "w")
            #expect(try await client.kv.get("k") == "w")
        }
    }

    @Test func callsAfterCloseFail() async throws {
        try await withCluster { _, client in
            try await client.kv.put("k", "v")
            await client.close()
            await #expect(throws: CSMRClientError.closed) { try await client.kv.get("k") }
            await client.close()
        }
    }

    @Test func aClusterWithNothingListeningIsUnreachable() async throws {
        // Bind a port and stop listening on it, so nothing answers there.
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let group = try await TestGroup.start(replicas: 1, loop: loops.next())
        try await group.stopAll()
        await #expect(throws: CSMRClientError.unreachable(group: 0)) {
            _ = try await CSMRClient.connect(cluster: ClusterEndpoints(cluster: TestGroup.cluster.name, ports: group.ports), options: fastOptions())
        }
        try await loops.shutdownGracefully()
    }

    @Test func commandsGoToTheGroupTheCompositionNames() async throws {
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let kvGroup = try await TestGroup.start(replicas: 3, group: 0, loop: loops.next())
        let logGroup = try await TestGroup.start(replicas: 3, group: 1, loop: loops.next())
        let spec = CompositionSpec(name: "two", groups: [
            .init(name: "kv", replicas: 3, toleratedFailures: 1, mode: .multiLeader, services: [.kv]),
            .init(name: "rest", replicas: 3, toleratedFailures: 1, mode: .multiLeader, services: [.lock, .log]),
        ], extendPutsIntoLog: false, partition: nil)
        let endpoints = ClusterEndpoints(cluster: TestGroup.cluster.name, groups: [kvGroup.endpoints, logGroup.endpoints], composition: spec)
        let client = try await CSMRClient.connect(cluster: endpoints, options: fastOptions())
        try await client.kv.put("k", "v")
        _ = try await client.log.append("e")
        await client.close()
        #expect(kvGroup.machine.withLockedValue { $0.kv.get("k") } == "v")
        #expect(kvGroup.machine.withLockedValue { $0.log.count } == 0)
        #expect(logGroup.machine.withLockedValue { Array($0.log.entries) } == ["e"])
        try await kvGroup.stopAll()
        try await logGroup.stopAll()
        try await loops.shutdownGracefully()
    }
}
