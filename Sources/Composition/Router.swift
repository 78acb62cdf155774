import Primitives
import Services

/// The proxy's routing, pure: which group serves a client's command.
public struct Router: Sendable {
    public let spec: CompositionSpec
    private let groupOfService: [ServiceKind: Int]

    public init(spec: CompositionSpec) {
        self.spec = spec
        var map: [ServiceKind: Int] = [:]
        for service in CompositionSpec.services where spec.partition?.service != service {
            if let group = spec.group(serving: service) { map[service] = group }
        }
        groupOfService = map
    }

    /// The group a command goes to.
    public func group(for command: Command) -> Int {
        let service = command.service
        if let partition = spec.partition, partition.service == service, let key = Self.key(of: command) {
            return Self.group(of: key, rule: partition.rule)
        }
        guard let group = groupOfService[service] else {
            preconditionFailure("no group serves \(service); CompositionSpec.parse refuses such specs")
        }
        return group
    }

    /// The group extension steps go to (the log's), if puts are extended.
    public var extensionTarget: Int? { spec.extendPutsIntoLog ? groupOfService[.log] : nil }

    /// The group whose puts are extended.
    public var extensionOrigin: Int? { spec.extendPutsIntoLog ? groupOfService[.kv] : nil }

    static func key(of command: Command) -> String? {
        switch command {
        case let .kvGet(key), let .kvPut(key, _): key
        case let .lockAcquire(name), let .lockRelease(name): name
        default: nil
        }
    }

    public static func group(of key: String, rule: CompositionSpec.Partitioning) -> Int {
        switch rule {
        case let .hash(groups):
            return groups[Int(Digest(of: key.utf8).value % UInt64(groups.count))]
        case let .range(groups, bounds):
            for (index, bound) in bounds.enumerated() where key < bound { return groups[index] }
            return groups[groups.count - 1]
        case let .prefix(prefixes, defaultGroup):
            return prefixes.first { key.hasPrefix($0.prefix) }?.group ?? defaultGroup
        }
    }
}
