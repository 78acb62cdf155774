import CSMRClient
import Foundation
import Harness
import Linearizability
import Primitives
import Services
import Testing
import Workload

/// CSMRClient against three `csmr replica` processes, one of which is killed with SIGKILL.
@Suite(.serialized) struct ClientProcessTests {
    /// Starts `csmr replica` and waits for its ready line.
    private static func startReplica(cluster: String, id: Int, log: String) throws -> Process {
        let process = Process()
        process.executableURL = CSMRBinary.url
        // No --exit-with-parent: the kernel ties it to the thread that started the child, and a
        // test's threads come and go; the test's own defer stops every replica by its PID.
        process.arguments = ["replica", "--cluster", cluster, "--id", "\(id)"]
        let output = Pipe()
        process.standardOutput = output
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        try process.run()
        var text = ""
        let deadline = Date().addingTimeInterval(30)
        while !text.contains("\n"), Date() < deadline, process.isRunning {
            let data = output.fileHandleForReading.availableData
            if data.isEmpty { usleep(10_000) } else { text += String(decoding: data, as: UTF8.self) }
        }
        try #require(text.hasPrefix("ready"), "replica \(id) printed \(text)")
        output.fileHandleForReading.readabilityHandler = { handle in _ = handle.availableData }
        return process
    }

    @Test func clientsSurviveAKilledReplicaAndTheirHistoryIsLinearizable() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("csmr-client-processes-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var clientPorts: [Int] = []
        var replicas: [String] = []
        for _ in 0..<3 {
            let peer = try ProcessCluster.freePort(), client = try ProcessCluster.freePort()
            clientPorts.append(client)
            replicas.append("      - {peer: \"127.0.0.1:\(peer)\", client: \"127.0.0.1:\(client)\"}")
        }
        let cluster = "\(folder)/cluster.yaml"
        try """
            cluster: ci
            groups:
              - name: main
                protocol: multi-leader
                durability: fsync
                checkpoint_interval_slots: 100
                data_dir: data
                replicas:
            \(replicas.joined(separator: "\n"))
            """.write(toFile: cluster, atomically: true, encoding: .utf8)
        var processes: [Process] = []
        defer {
            // Every process this test started, it stops by its PID.
            for process in processes where process.isRunning { kill(process.processIdentifier, SIGKILL) }
            for process in processes { process.waitUntilExit() }
        }
        for id in 0..<3 { processes.append(try Self.startReplica(cluster: cluster, id: id, log: "\(folder)/r\(id).log")) }

        let endpoints = ClusterEndpoints(cluster: "ci", ports: clientPorts)
        let history = HistoryBox()
        let victim = processes[2].processIdentifier
        // Every client is connected before the clock for the kill starts (a slow CI machine may
        // take a while); a refused dial is tried again, a bounded number of times.
        var clients: [CSMRClient] = []
        for _ in 0..<4 {
            var options = CSMRClientOptions()
            options.sessions = 1
            options.callTimeout = .seconds(30)
            var connected: CSMRClient?
            for attempt in 0..<20 where connected == nil {
                do {
                    connected = try await CSMRClient.connect(cluster: endpoints, options: options)
                } catch where attempt < 19 {
                    try await Task.sleep(for: .milliseconds(250))
                }
            }
            clients.append(try #require(connected))
        }
        let connectedClients = clients
        let start = DispatchTime.now().uptimeNanoseconds
        func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds - start }
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for worker in 0..<4 {
                tasks.addTask {
                    let client = connectedClients[worker]
                    let id = ClientID(UInt64(worker + 1))
                    // Until well after the kill, so calls are in flight when it happens; bounded.
                    var step = 0
                    while step < 3_000, step < 60 || now() < 1_500_000_000 {
                        defer { step += 1 }
                        let key = "k\((worker + step) % 5)"
                        let command: Command = switch step % 6 {
                        case 0, 3: .kvPut(key: key, value: "w\(worker)s\(step)")
                        case 1, 4: .kvGet(key: key)
                        case 2: .logAppend(entry: "w\(worker)s\(step)")
                        default: step % 12 == 5 ? .lockAcquire(name: "lock\(worker % 2)") : .lockRelease(name: "lock\(worker % 2)")
                        }
                        let invoked = now()
                        let reply = try await client.execute(command)
                        history.append(HistoryOperation(client: id, command: command, invokeNanoseconds: invoked,
                                                        completion: .init(nanoseconds: now(), reply: reply)))
                    }
                    await client.close()
                }
            }
            tasks.addTask {
                // Mid-run, a replica dies without warning.
                try await Task.sleep(for: .milliseconds(600))
                kill(victim, SIGKILL)
            }
            try await tasks.waitForAll()
        }
        for process in processes where process.isRunning { kill(process.processIdentifier, SIGTERM) }
        for process in processes { process.waitUntilExit() }
        let operations = history.operations
        #expect(operations.count >= 240)
        // Some calls completed after the kill (they failed over to the live replicas).
        #expect(operations.contains { $0.invokeNanoseconds > 700_000_000 })
        #expect(processes[2].terminationReason == .uncaughtSignal)
        let path = "\(folder)/history.jsonl"
        try HistoryFile.encode(operations).write(toFile: path, atomically: true, encoding: .utf8)
        let check = try CSMRBinary.run(["check", path])
        #expect(check.status == 0, "\(check.output)")
        #expect(check.output.contains("linearizable"))
    }
}

/// Operations recorded by concurrent tasks.
private final class HistoryBox: @unchecked Sendable {
    private let lock = NSLock()
    private var recorded: [HistoryOperation] = []
    func append(_ operation: HistoryOperation) { lock.withLock { recorded.append(operation) } }
    var operations: [HistoryOperation] { lock.withLock { recorded } }
}
