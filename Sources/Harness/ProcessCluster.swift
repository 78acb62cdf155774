import Composition
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Primitives
import Services
import Transport
import Wire
import Workload

/// Replica groups as `csmr replica` processes on this host, reached over TCP with the client
/// protocol: the harness writes a cluster file, starts one process per replica, waits for each to
/// print its ready line, and connects to every replica's client port. Faults are real: `crash`
/// is SIGKILL, `restart` starts the process again on the same files, `pause` is SIGSTOP then
/// SIGCONT, and `partition`/`heal` rewrite each replica's control file (`ReplicaControl`) and
/// send it SIGUSR2, so its peer transport drops the frames across the cut. Every process it starts, it stops by its PID (SIGTERM, then SIGKILL after a grace).
public final class ProcessCluster: LoadTarget, @unchecked Sendable {
    // `processes` and `connections` are guarded by `lock`; the rest is written once in `init`.
    public let router: Router
    public let cluster: ClusterSpec
    /// The replicas forward extension steps (a composition that extends puts into the log).
    public let forwardsExtensionStepsItself: Bool
    public let clusterFile: String
    private let executable: String?
    /// The replicas run already (a cluster file given to the workload): connect, never start,
    /// kill or stop them.
    private let attached: Bool
    /// Clients go through a `csmr proxy` process, which routes by the composition.
    private let viaProxy: Bool
    private var proxyProcess: Process?
    private var proxyConnection: FrameClient?
    private var proxyConnecting = false
    private let logFolder: String
    private let loop: EventLoop
    private let onReply: @Sendable (Int, ClientReply) -> Void
    private let onEvent: @Sendable (String) -> Void
    private let lock = NIOLock()
    private var processes: [[Process?]]
    /// Client connections by client location, group and replica: each location dials every
    /// replica, and its connection to a replica elsewhere carries the link's emulated delay.
    private var connections: [[[FrameClient?]]]
    private var connecting: [[[Bool]]]
    /// Where the load generator's clients are (nil: one place, no delays).
    public let placement: ClientPlacement?
    private var stopping = false
    /// Each replica process's CPU budget (`group.cpu_cores_per_replica`); nil: uncapped.
    public let cpuQuota: CPUQuota?

    /// Seconds a replica may take to print its ready line.
    public static let readySecondsMax = 30.0

    /// - Parameters:
    ///   - cluster: the cluster to run (addresses on this host).
    ///   - folder: where the cluster file and each replica's log go.
    ///   - executable: the `csmr` binary to start.
    ///   - placement: the clients' locations and the groups' networks, when links are delayed.
    ///   - cpuCoresPerReplica: caps each replica process at this many cores (`CPUQuota`); 0: uncapped.
    public init(cluster: ClusterSpec, composition: CompositionSpec, folder: String, executable: String?, attach: Bool = false,
                viaProxy: Bool = false, placement: ClientPlacement? = nil, cpuCoresPerReplica: Double = 0, loop: EventLoop,
                onReply: @escaping @Sendable (Int, ClientReply) -> Void, onEvent: @escaping @Sendable (String) -> Void) throws {
        cpuQuota = cpuCoresPerReplica > 0 ? try CPUQuota(cores: cpuCoresPerReplica) : nil
        self.cluster = cluster
        self.viaProxy = viaProxy
        forwardsExtensionStepsItself = composition.extendPutsIntoLog
        // Through a proxy, clients see one group of one "replica": the proxy.
        router = viaProxy ? Router(spec: CompositionSpec(name: "proxy", groups: [CompositionSpec.Group(name: "proxy", replicas: 1, toleratedFailures: 0,
                                                                                                        mode: .multiLeader, services: [.kv, .lock, .log])],
                                                         extendPutsIntoLog: false, partition: nil))
            : Router(spec: composition)
        self.executable = executable
        attached = attach
        logFolder = folder
        self.loop = loop
        self.onReply = onReply
        self.onEvent = onEvent
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        clusterFile = URL(fileURLWithPath: folder).appendingPathComponent("cluster.yaml").path
        try cluster.yaml.write(toFile: clusterFile, atomically: true, encoding: .utf8)
        self.placement = placement
        processes = cluster.groups.map { Array(repeating: nil, count: $0.replicas.count) }
        let locations = placement?.locations.count ?? 1
        connections = Array(repeating: cluster.groups.map { Array(repeating: nil, count: $0.replicas.count) }, count: locations)
        connecting = Array(repeating: cluster.groups.map { Array(repeating: false, count: $0.replicas.count) }, count: locations)
    }

    /// A cluster of the composition's groups on free loopback ports, with each group's files
    /// under `dataDirectory`. A composition's groups bring their own replicas, protocol, batch and
    /// pipeline; a plain workload's one group takes all of `settings`.
    public static func localCluster(name: String, composition: CompositionSpec, isComposed: Bool, settings: GroupSpec,
                                    dataDirectory: String?) throws -> ClusterSpec {
        var groups: [ClusterSpec.Group] = []
        for group in composition.groups {
            var groupSettings = settings
            if isComposed {
                groupSettings.replicas = group.replicas
                groupSettings.replication = group.mode == .singleLeader ? .singleLeader : .multiLeader
                groupSettings.batchCommandsMax = group.batchCommandsMax
                groupSettings.pipelineDepthMax = group.pipelineDepthMax
            }
            groupSettings.dataDirectory = dataDirectory.map { URL(fileURLWithPath: $0).appendingPathComponent(group.name).path }
            let replicas = try (0..<groupSettings.replicas).map { _ in
                ClusterSpec.Replica(peer: ClusterSpec.Address(host: "127.0.0.1", port: try freePort()),
                                    client: ClusterSpec.Address(host: "127.0.0.1", port: try freePort()))
            }
            groups.append(ClusterSpec.Group(name: group.name, settings: groupSettings, replicas: replicas))
        }
        return ClusterSpec(name: name, groups: groups)
    }

    /// Ports this process handed out lately, oldest first: the kernel may offer a port again as
    /// soon as the probing socket closes, and a cluster whose replica got the same port for its
    /// peers and its clients cannot start (seen once in a long comparison).
    private static let recentPorts = NIOLockedValueBox<[Int]>([])
    private static let recentPortsMax = 4_096

    /// A port nobody listens on now (the kernel's choice for port 0) and that this process has not
    /// handed out among its last `recentPortsMax`, for a replica to bind.
    public static func freePort() throws -> Int {
        for _ in 0..<64 {
            let port = try kernelChosenPort()
            let fresh = recentPorts.withLockedValue { recent in
                guard !recent.contains(port) else { return false }
                recent.append(port)
                if recent.count > recentPortsMax { recent.removeFirst(recent.count - recentPortsMax) }
                return true
            }
            if fresh { return port }
        }
        throw ServerError.unsupported("no free port: the kernel offered only ports handed out lately")
    }

    private static func kernelChosenPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ServerError.unsupported("socket: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw ServerError.unsupported("bind: errno \(errno)") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    public var groupCount: Int { viaProxy ? 1 : cluster.groups.count }
    public func replicaCount(of group: Int) -> Int { viaProxy ? 1 : cluster.groups[group].replicas.count }

    /// Starts every replica and waits until each is ready and connected.
    public func launch() throws {
        for group in cluster.groups.indices where !attached {
            for replica in cluster.groups[group].replicas.indices {
                // A folder used before may hold an old partition.
                try ReplicaControl().write(path: controlPath(group: group, replica: replica))
                try spawn(group: group, replica: replica)
            }
        }
        if viaProxy {
            try spawnProxy()
            try connectProxy().wait()
            return
        }
        for location in connections.indices {
            for group in cluster.groups.indices {
                for replica in cluster.groups[group].replicas.indices { try connect(group: group, replica: replica, location: location).wait() }
            }
        }
    }

    private func spawnProxy() throws {
        guard let executable, let proxy = cluster.proxy else { throw ServerError.unsupported("no proxy address in the cluster file") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["proxy", "--cluster", clusterFile, "--exit-with-parent"]
        let output = Pipe()
        process.standardOutput = output
        let logPath = URL(fileURLWithPath: logFolder).appendingPathComponent("proxy.log").path
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        try process.run()
        lock.withLock { proxyProcess = process }
        try Self.awaitReady(output, process: process, logPath: logPath, name: "the proxy at \(proxy)")
    }

    private func connectProxy() -> EventLoopFuture<Void> {
        guard let proxy = cluster.proxy,
              let address = try? SocketAddress.makeAddressResolvingHost(proxy.host, port: proxy.port) else { return loop.makeSucceededFuture(()) }
        let proceed = lock.withLock { () -> Bool in
            guard !stopping, !proxyConnecting, proxyConnection == nil else { return false }
            proxyConnecting = true
            return true
        }
        guard proceed else { return loop.makeSucceededFuture(()) }
        let onReply = onReply
        return FrameClient.connect(to: address, on: loop, handshake: Handshake(cluster: ClusterIdentity(name: cluster.name), role: .client, group: 0),
                                   log: { _ in }, onFrame: { kind, payload in
            guard case let .reply(reply)? = try? WireFormat.decode(kind: kind, payload: payload) else { return }
            onReply(0, reply)
        }).map { [self] client in
            lock.withLock {
                proxyConnecting = false
                proxyConnection = client
            }
            client.closeFuture.whenComplete { [self] _ in lock.withLock { if proxyConnection === client { proxyConnection = nil } } }
        }.flatMapErrorThrowing { [self] error in
            lock.withLock { proxyConnecting = false }
            throw error
        }
    }

    public func start() {}

    public func stop() -> EventLoopFuture<Void> {
        let (all, clients) = lock.withLock { () -> ([Process], [FrameClient]) in
            stopping = true
            return ([proxyProcess].compactMap { $0 } + processes.flatMap { $0.compactMap { $0 } },
                    [proxyConnection].compactMap { $0 } + connections.flatMap { $0.flatMap { $0.compactMap { $0 } } })
        }
        for client in clients { _ = client.close() }
        for process in all where process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(10)
        for process in all {
            while process.isRunning, Date() < deadline { usleep(20_000) }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
        if let cpuQuota {
            for group in cluster.groups.indices {
                for replica in cluster.groups[group].replicas.indices {
                    if let throttled = cpuQuota.throttledMicroseconds(name: name(group, replica)) {
                        onEvent(String(format: "%@ was throttled %.1f s in all by its %.2f-core budget", name(group, replica), Double(throttled) / 1e6, cpuQuota.cores))
                    }
                    cpuQuota.release(name: name(group, replica))
                }
            }
        }
        return loop.makeSucceededFuture(())
    }

    public func submit(_ request: Request, group: Int, replica: Int) {
        submit(request, group: group, replica: replica, fromLocation: 0, sampled: false)
    }

    /// A sampled request goes as its own frame kind straight to a replica, which answers with its
    /// stage times; through a proxy it goes as a plain request (the proxy does not carry stages).
    public func submit(_ request: Request, group: Int, replica: Int, fromLocation location: Int, sampled: Bool) {
        if viaProxy {
            guard let client = lock.withLock({ proxyConnection }) else {
                _ = connectProxy()
                return
            }
            client.send(kind: FrameKind.request, payload: WireFormat.payload(of: .request(request)))
            return
        }
        let client = lock.withLock { connections[location][group][replica] }
        guard let client else {
            // Down or not connected: the load generator's retry goes to the next replica; the
            // connection is made again meanwhile.
            _ = connect(group: group, replica: replica, location: location)
            return
        }
        let message: Message = sampled ? .sampledRequest(request) : .request(request)
        client.send(kind: message.kind, payload: WireFormat.payload(of: message))
    }

    public func inject(_ action: TimedEvent.Action, group: Int) {
        switch action {
        case let .crash(replica):
            guard let process = lock.withLock({ processes[group][replica] }), process.isRunning else { return }
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            onEvent("\(name(group, replica)) killed (SIGKILL, pid \(process.processIdentifier))")
        case let .restart(replica):
            do {
                try spawn(group: group, replica: replica)
                for location in connections.indices { _ = connect(group: group, replica: replica, location: location) }
            } catch {
                onEvent("\(name(group, replica)) did not restart: \(error)")
            }
        case let .pause(replica, milliseconds):
            guard let process = lock.withLock({ processes[group][replica] }), process.isRunning else { return }
            let pid = process.processIdentifier
            kill(pid, SIGSTOP)
            loop.scheduleTask(in: .milliseconds(Int64(milliseconds))) { kill(pid, SIGCONT) }
        case let .partition(sides):
            block(Self.blockedPeers(sides: sides, replicas: cluster.groups[group].replicas.count), group: group)
        case .heal:
            block(Array(repeating: [], count: cluster.groups[group].replicas.count), group: group)
        }
    }

    /// For each replica of a group of `replicas`, the peers on another side: a pair is cut when
    /// its replicas are on different sides, as `InProcessCluster.partition` cuts it, so a replica
    /// named on no side still reaches everyone.
    public static func blockedPeers(sides: [[Int]], replicas: Int) -> [Set<Int>] {
        var blocked = Array(repeating: Set<Int>(), count: replicas)
        for link in Link.cut(bySides: sides, replicas: replicas) { blocked[link.from].insert(link.to) }
        return blocked
    }

    /// Writes every replica's control file, then signals the running ones to read it. A replica
    /// that is down reads it when it restarts.
    private func block(_ blocked: [Set<Int>], group: Int) {
        guard !attached else {
            onEvent("cannot partition replicas this run did not start")
            return
        }
        for (replica, peers) in blocked.enumerated() {
            do {
                try ReplicaControl(blockedPeers: peers).write(path: controlPath(group: group, replica: replica))
            } catch {
                onEvent("\(name(group, replica)): cannot write its control file: \(error)")
                continue
            }
            guard let process = lock.withLock({ processes[group][replica] }), process.isRunning else { continue }
            kill(process.processIdentifier, SIGUSR2)
        }
    }

    private func controlPath(group: Int, replica: Int) -> String {
        URL(fileURLWithPath: logFolder).appendingPathComponent("replica-\(cluster.groups[group].name)-r\(replica).control").path
    }

    private func name(_ group: Int, _ replica: Int) -> String {
        cluster.groups.count > 1 ? "\(cluster.groups[group].name)/r\(replica)" : "r\(replica)"
    }

    private func spawn(group: Int, replica: Int) throws {
        guard !attached, let executable else { throw ServerError.unsupported("this run did not start \(name(group, replica)); it cannot restart it") }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["replica", "--cluster", clusterFile, "--id", "\(replica)", "--group", cluster.groups[group].name,
                             "--control", controlPath(group: group, replica: replica), "--exit-with-parent"]
        let output = Pipe()
        process.standardOutput = output
        let logPath = URL(fileURLWithPath: logFolder).appendingPathComponent("replica-\(cluster.groups[group].name)-r\(replica).log").path
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        logHandle.seekToEndOfFile()
        process.standardError = logHandle
        try process.run()
        lock.withLock { processes[group][replica] = process }
        if let cpuQuota {
            do {
                try cpuQuota.apply(pid: process.processIdentifier, name: name(group, replica))
            } catch {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                throw error
            }
        }
        try Self.awaitReady(output, process: process, logPath: logPath, name: name(group, replica))
    }

    /// Waits for a started process's ready line (or the reason it never came), then drains its
    /// output so a full pipe never blocks it.
    private static func awaitReady(_ output: Pipe, process: Process, logPath: String, name: String) throws {
        let deadline = Date().addingTimeInterval(readySecondsMax)
        var text = ""
        while !text.contains("\n") {
            let data = output.fileHandleForReading.availableData
            if data.isEmpty {
                guard process.isRunning, Date() < deadline else {
                    let log = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                    throw ServerError.unsupported("\(name) did not become ready: \(log.split(separator: "\n").suffix(3).joined(separator: " | "))")
                }
                usleep(10_000)
                continue
            }
            text += String(decoding: data, as: UTF8.self)
        }
        guard text.hasPrefix("ready") else { throw ServerError.unsupported("\(name) printed \(text)") }
        output.fileHandleForReading.readabilityHandler = { handle in _ = handle.availableData }
    }

    /// Connects a client location to a replica's client port (once at a time); replies arrive on
    /// `loop`, after the link's delay.
    @discardableResult
    private func connect(group: Int, replica: Int, location: Int) -> EventLoopFuture<Void> {
        let proceed = lock.withLock { () -> Bool in
            guard !stopping, !connecting[location][group][replica], connections[location][group][replica] == nil else { return false }
            connecting[location][group][replica] = true
            return true
        }
        guard proceed else { return loop.makeSucceededFuture(()) }
        let target = cluster.groups[group].replicas[replica].client
        let address: SocketAddress
        do {
            address = try SocketAddress.makeAddressResolvingHost(target.host, port: target.port)
        } catch {
            lock.withLock { connecting[location][group][replica] = false }
            return loop.makeFailedFuture(error)
        }
        let handshake = Handshake(cluster: ClusterIdentity(name: cluster.name), role: .client, group: UInt32(group))
        let onReply = onReply
        let delay = placement?.delayMicroseconds(location: location, group: group, replica: replica) ?? 0
        let future = FrameClient.connect(to: address, on: loop, handshake: handshake, delayMicroseconds: delay, log: { _ in }, onFrame: { kind, payload in
            guard case let .reply(reply)? = try? WireFormat.decode(kind: kind, payload: payload) else { return }
            onReply(group, reply)
        })
        return future.map { [self] client in
            lock.withLock {
                connecting[location][group][replica] = false
                connections[location][group][replica] = client
            }
            client.closeFuture.whenComplete { [self] _ in
                lock.withLock { if connections[location][group][replica] === client { connections[location][group][replica] = nil } }
            }
        }.flatMapErrorThrowing { [self] error in
            lock.withLock { connecting[location][group][replica] = false }
            throw error
        }
    }
}
