import ArgumentParser
import Composition
import Dispatch
import Foundation
import Harness
import NIOPosix
import Workload

struct Replica: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one replica of one group of a cluster file as this process.",
        discussion: """
            Prints one line starting with "ready" once it listens for peers and clients. SIGTERM or SIGINT \
            stops it cleanly (buffered records are written and synced); SIGUSR1 prints its counters, which it \
            also prints at exit. Files go to the group's data_dir/r<id>; a restart on the same folder recovers \
            from them. With --control, SIGUSR2 makes it read that file again and cut off the peers it names \
            (a partition made by the harness; see docs/cluster.md).
            """
    )

    @Option(help: "The cluster file (YAML, see docs/protocol.md).")
    var cluster: String

    @Option(help: "The replica's index in its group (0-based).")
    var id: Int

    @Option(help: "The group's name (default: the first group).")
    var group: String?

    @Option(help: "A control file naming the peers to cut off (\"blocked: 0 2\"), read at start and on SIGUSR2; the harness writes it. A malformed file is logged and ignored.")
    var control: String?

    @Flag(help: "Exit when the thread that started this process exits (Linux's parent-death signal is per thread): for a harness whose starting thread lives as long as the run.")
    var exitWithParent = false

    func run() throws {
        ProcessLifecycle.holdReportSignals()
        try ProcessLifecycle.bindToParent(exitWithParent)
        let spec: ClusterSpec
        do {
            spec = try ClusterSpec.load(path: cluster)
        } catch {
            FileHandle.standardError.write(Data("csmr replica: the cluster file has errors; nothing started.\n\(error)\n".utf8))
            throw ExitCode(2)
        }
        let groupIndex: Int
        if let group {
            guard let index = spec.groups.firstIndex(where: { $0.name == group }) else {
                FileHandle.standardError.write(Data("csmr replica: --group \(group): \(cluster) has no such group (it has \(spec.groups.map(\.name).joined(separator: ", ")))\n".utf8))
                throw ExitCode(2)
            }
            groupIndex = index
        } else {
            groupIndex = 0
        }
        let replicas = spec.groups[groupIndex].replicas.count
        guard (0..<replicas).contains(id) else {
            FileHandle.standardError.write(Data("csmr replica: --id \(id): group \(spec.groups[groupIndex].name) has replicas 0 to \(replicas - 1)\n".utf8))
            throw ExitCode(2)
        }
        var composition: CompositionSpec?
        if let path = spec.composition {
            do {
                composition = try CompositionSpec.parse(SpecFile.read(path), file: path)
            } catch {
                FileHandle.standardError.write(Data("csmr replica: the composition named by \(cluster) has errors; nothing started.\n\(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        let name = "\(spec.groups[groupIndex].name)/r\(id)"
        let log: @Sendable (String) -> Void = { line in FileHandle.standardError.write(Data("csmr replica \(name): \(line)\n".utf8)) }
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server: ReplicaServer
        do {
            server = try ReplicaServer(cluster: spec, group: groupIndex, replica: id, composition: composition, controlFile: control, loop: loops.next(), log: log)
        } catch {
            log("cannot start: \(error)")
            try? loops.syncShutdownGracefully()
            throw ExitCode(1)
        }
        var onControl: (@Sendable () -> Void)?
        if control != nil { onControl = { server.reloadControl() } }
        // Before the ready line: from then on, the harness's SIGUSR1 and SIGUSR2 are handled.
        let signals = ProcessLifecycle.watchSignals(label: "csmr.replica.signals", onReport: {
            if let line = try? server.report().wait() { log(line) }
        }, onControl: onControl)
        do {
            let addresses = try server.start().wait()
            // Written unbuffered: whoever started this process waits for the line.
            FileHandle.standardOutput.write(Data("ready: replica \(id) of group \(spec.groups[groupIndex].name) in cluster \(spec.name), pid \(getpid()), peers at \(spec.groups[groupIndex].replicas[id].peer.host):\(addresses.peer.port ?? 0), clients at \(spec.groups[groupIndex].replicas[id].client.host):\(addresses.client.port ?? 0)\n".utf8))
        } catch {
            log("cannot start: \(error)")
            try? loops.syncShutdownGracefully()
            throw ExitCode(1)
        }
        signals.waitForTermination()
        log("stopping")
        if let line = try? server.report().wait() { log(line) }
        try? server.stop().wait()
        try? loops.syncShutdownGracefully()
        log("stopped")
    }
}
