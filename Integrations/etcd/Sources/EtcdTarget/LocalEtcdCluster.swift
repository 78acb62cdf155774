import Foundation
import Harness

/// A loopback etcd cluster that a run starts and stops itself: one `etcd` process per member on
/// free 127.0.0.1 ports, data directories and logs inside the run's folder, every member stopped
/// by its PID.
public final class LocalEtcdCluster: @unchecked Sendable {
    // Mutated only by the thread that runs the workload, and by `stop` (idempotent, locked).
    public let clientEndpoints: [String]
    private let peerURLs: [String]
    private let folder: URL
    private let binary: String
    private let token: String
    private var members: [Process] = []
    private let lock = NSLock()

    /// - Parameters:
    ///   - folder: where `etcd-data/mN` and `etcd-mN.log` go; the data directories must not
    ///     exist yet (a member started on another run's data would rejoin that run's cluster).
    public init(members count: Int, binary: String, folder: URL) throws {
        guard let resolved = Self.locate(binary) else { throw EtcdError.notInstalled(binary) }
        self.binary = resolved
        self.folder = folder
        token = "csmr-\(UUID().uuidString.prefix(8))"
        var clients: [String] = []
        var peers: [String] = []
        for _ in 0..<count {
            clients.append("127.0.0.1:\(try ProcessCluster.freePort())")
            peers.append("http://127.0.0.1:\(try ProcessCluster.freePort())")
        }
        clientEndpoints = clients
        peerURLs = peers
    }

    public static func isInstalled(_ binary: String) -> Bool { locate(binary) != nil }

    /// The members' process ids, while running.
    public var pids: [Int32] { lock.withLock { members.map(\.processIdentifier) } }

    /// An executable path for `binary`: as given when it has a slash, else looked up in PATH.
    static func locate(_ binary: String) -> String? {
        if binary.contains("/") { return FileManager.default.isExecutableFile(atPath: binary) ? binary : nil }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(binary)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Starts every member; they form the cluster among themselves (`waitUntilServing` on a
    /// target says when it is up).
    public func start() throws {
        let dataRoot = folder.appendingPathComponent("etcd-data")
        if FileManager.default.fileExists(atPath: dataRoot.path) {
            throw EtcdError.notServing("\(dataRoot.path) exists already; a fresh cluster needs fresh data directories")
        }
        let initialCluster = peerURLs.enumerated().map { "m\($0.offset)=\($0.element)" }.joined(separator: ",")
        for (index, client) in clientEndpoints.enumerated() {
            let name = "m\(index)"
            let data = dataRoot.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
            let logPath = folder.appendingPathComponent("etcd-\(name).log").path
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            let process = Process()
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = [
                "--name", name, "--data-dir", data.path,
                "--listen-client-urls", "http://\(client)", "--advertise-client-urls", "http://\(client)",
                "--listen-peer-urls", peerURLs[index], "--initial-advertise-peer-urls", peerURLs[index],
                "--initial-cluster", initialCluster, "--initial-cluster-token", token, "--initial-cluster-state", "new",
                "--logger", "zap", "--log-outputs", "stderr",
            ]
            let log = FileHandle(forWritingAtPath: logPath)
            process.standardOutput = log
            process.standardError = log
            process.standardInput = FileHandle.nullDevice
            try process.run()
            lock.withLock { members.append(process) }
        }
    }

    /// Members that have exited, with their status (a port taken between choosing and binding,
    /// say); each line names its log.
    public func exited() -> [String] {
        lock.withLock {
            members.enumerated().filter { !$0.element.isRunning }.map {
                "m\($0.offset) (pid \($0.element.processIdentifier)) exited with status \($0.element.terminationStatus); see \(folder.path)/etcd-m\($0.offset).log"
            }
        }
    }

    /// Stops every member by its PID: SIGTERM, then SIGKILL for one still running after 5 s.
    /// Safe to call more than once.
    public func stop() {
        let running = lock.withLock {
            let all = members
            members = []
            return all
        }
        for process in running where process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(5)
        for process in running {
            while process.isRunning, Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
    }

    deinit { stop() }
}
