import Composition
import Foundation
import Execution
import NIOCore
import Paxos
import Primitives
import Runtime
import Services
import Storage
import Workload

/// Several in-process groups behind one front: the groups of a composition, or a single group.
/// The load driver routes each request with the composition's `Router` (the proxy) and submits it
/// to a replica of the chosen group.
public final class ComposedCluster: LoadTarget, @unchecked Sendable {
    // `groups` is written once in `init`; each group's state is confined to its loops.
    public let router: Router
    private(set) var groups: [InProcessCluster] = []

    /// - Parameters:
    ///   - configs: one Paxos configuration per group of `spec` (nil for one unreplicated group).
    ///   - onReply: a reply and the group it came from.
    ///   - onExtensionSteps: steps produced by the extension's origin group.
    ///   - durability: how replicas keep acceptor state; with files, group g's replicas keep theirs
    ///     in `<directory>/<group name>/r<replica>`.
    ///   - onEvent: state transfers and storage failures, as one line each.
    init(spec: CompositionSpec, configs: [PaxosConfig?], execution: ExecutionConfig, durability: ReplicaDurability = ReplicaDurability(),
         loops: [EventLoop],
         onReply: @escaping @Sendable (Int, ClientReply) -> Void,
         onExtensionSteps: @escaping @Sendable ([(index: UInt64, entry: String)]) -> Void,
         onExtensionAppended: @escaping @Sendable ([(origin: UInt32, index: UInt64, logIndex: UInt64)]) -> Void,
         onEvent: (@Sendable (String) -> Void)? = nil) {
        router = Router(spec: spec)
        var firstLoop = 0
        for (index, config) in configs.enumerated() {
            let origin: UInt32? = router.extensionOrigin == index ? UInt32(index) : nil
            var groupDurability = durability
            if let directory = durability.directory {
                groupDurability.directory = URL(fileURLWithPath: directory).appendingPathComponent(spec.groups[index].name).path
            }
            let prefix = configs.count > 1 ? "\(spec.groups[index].name)/" : ""
            groups.append(InProcessCluster(config: config, execution: execution, loops: loops, firstLoop: firstLoop, extensionOrigin: origin,
                                           durability: groupDurability,
                                           onReply: { reply in onReply(index, reply) },
                                           onExtensionSteps: origin == nil ? nil : onExtensionSteps,
                                           onExtensionAppended: router.extensionTarget == index ? onExtensionAppended : nil,
                                           onEvent: onEvent.map { sink in { @Sendable text in sink(prefix + text) } }))
            firstLoop += config?.replicaCount ?? 1
        }
    }

    public var groupCount: Int { groups.count }

    public func replicaCount(of group: Int) -> Int { groups[group].replicaCount }

    public func start() { for group in groups { group.start() } }

    public func stop() -> EventLoopFuture<Void> {
        let futures = groups.map { $0.stop() }
        return EventLoopFuture.andAllSucceed(futures, on: futures[0].eventLoop)
    }

    public func submit(_ request: Request, group: Int, replica: Int) { groups[group].submit(request, to: replica) }

    public func submit(_ request: Request, group: Int, replica: Int, fromLocation location: Int, sampled: Bool) {
        groups[group].submit(request, to: replica, sampled: sampled)
    }

    public var storageStats: WALStats? {
        guard groups.contains(where: { $0.durability.mode != .none }) else { return nil }
        return WALStats.sum(groups.map(\.storageStats))
    }

    public func group(_ index: Int) -> InProcessCluster { groups[index] }

    public func inject(_ action: TimedEvent.Action, group index: Int) {
        let group = groups[index]
        switch action {
        case let .crash(replica): group.crash(replica)
        case let .restart(replica): group.restart(replica)
        case let .partition(sides): group.partition(sides)
        case .heal: group.heal()
        case let .pause(replica, milliseconds): group.pause(replica, milliseconds: milliseconds)
        }
    }
}
