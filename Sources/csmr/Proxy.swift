import ArgumentParser
import Composition
import Dispatch
import Foundation
import Harness
import NIOPosix
import Workload

struct Proxy: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the composition proxy of a cluster file as this process.",
        discussion: """
            Clients speak the client protocol (docs/protocol.md) to the proxy's address (the cluster file's \
            `proxy:`) as if it were one group; the proxy routes each command by the composition (`composition:` in \
            the cluster file) to a replica of the group that serves it. Prints one line starting with "ready" once \
            it listens; SIGTERM or SIGINT stops it.
            """
    )

    @Option(help: "The cluster file (YAML, see docs/cluster.md); it names the proxy's address and the composition.")
    var cluster: String

    @Flag(help: "Exit when the thread that started this process exits (Linux's parent-death signal is per thread): for a harness whose starting thread lives as long as the run.")
    var exitWithParent = false

    func run() throws {
        try ProcessLifecycle.bindToParent(exitWithParent)
        let spec: ClusterSpec
        let composition: CompositionSpec
        do {
            spec = try ClusterSpec.load(path: cluster)
            guard let path = spec.composition else {
                throw SpecErrors(errors: [SpecError(file: cluster, line: 1, column: 1, field: "composition",
                                                    problem: "csmr proxy routes by a composition: name its file here")])
            }
            composition = try CompositionSpec.parse(SpecFile.read(path), file: path)
            guard spec.proxy != nil else {
                throw SpecErrors(errors: [SpecError(file: cluster, line: 1, column: 1, field: "proxy", problem: "name the address the proxy listens on")])
            }
        } catch {
            FileHandle.standardError.write(Data("csmr proxy: the cluster file has errors; nothing started.\n\(error)\n".utf8))
            throw ExitCode(2)
        }
        let log: @Sendable (String) -> Void = { line in FileHandle.standardError.write(Data("csmr proxy: \(line)\n".utf8)) }
        let loops = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let server: ProxyServer
        do {
            server = try ProxyServer(cluster: spec, composition: composition, listen: spec.proxy!, loop: loops.next(), log: log)
            let address = try server.start().wait()
            FileHandle.standardOutput.write(Data("ready: proxy of cluster \(spec.name), pid \(getpid()), clients at \(spec.proxy!.host):\(address.port ?? 0)\n".utf8))
        } catch {
            log("cannot start: \(error)")
            try? loops.syncShutdownGracefully()
            throw ExitCode(1)
        }
        ProcessLifecycle.waitForTermination(label: "csmr.proxy.signals")
        log("stopping after routing \(server.requestsRouted) requests")
        try? server.stop().wait()
        try? loops.syncShutdownGracefully()
    }
}
