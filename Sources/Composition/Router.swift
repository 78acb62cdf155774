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

/// Sends a group's extension steps to the log's group, in order, until they are all applied.
///
/// Every replica of the origin group produces the same steps in the same order (they come from
/// executing its decided log), so the forwarder takes them from whichever replica reports them
/// first. It resends from the first unapplied step; the log applies a step only if it is the next
/// of its origin (`Command.logAppendFrom`), so resends, duplicates and reordering never append
/// twice or out of order.
public struct ExtensionForwarder: Sendable {
    public let origin: UInt32
    /// Steps 1, 2, … as entries.
    public private(set) var steps: [String] = []
    /// How many steps the log is known to hold.
    public private(set) var applied: UInt64 = 0
    private var lastSendNanoseconds: UInt64 = 0
    private var sentThrough: UInt64 = 0
    /// How many times unapplied steps were sent again: a driver moves to another replica of the
    /// log's group when this grows, and otherwise keeps one, whose proposals stay in order.
    public private(set) var resends = 0
    /// Steps sent per round.
    public let windowSteps: Int
    /// Unacknowledged steps are sent again after this long.
    public let resendNanoseconds: UInt64

    public init(origin: UInt32, windowSteps: Int = 64, resendNanoseconds: UInt64 = 50_000_000) {
        self.origin = origin
        self.windowSteps = windowSteps
        self.resendNanoseconds = resendNanoseconds
    }

    /// A replica executed step `index` (1-based) with this entry.
    public mutating func produced(index: UInt64, entry: String) {
        guard index == UInt64(steps.count) + 1 else { return }
        steps.append(entry)
    }

    /// The log's answer to a step.
    public mutating func acknowledged(_ reply: Reply) {
        if case let .extensionStep(_, appliedNow) = reply { applied = max(applied, appliedNow) }
    }

    public var isDrained: Bool { applied == UInt64(steps.count) }

    /// The requests to send now: new steps right away, unapplied ones again after the timeout.
    public mutating func due(nowNanoseconds now: UInt64) -> [Request] {
        guard !isDrained else { return [] }
        let resend = sentThrough > applied && now &- lastSendNanoseconds >= resendNanoseconds
        if resend { resends += 1 }
        let from = resend ? applied + 1 : max(applied, sentThrough) + 1
        let through = min(UInt64(steps.count), applied + UInt64(windowSteps))
        guard from <= through else { return [] }
        lastSendNanoseconds = now
        sentThrough = max(sentThrough, through)
        return (from...through).map { index in
            Request(client: Self.client(origin: origin), sequence: index,
                    command: .logAppendFrom(origin: origin, index: index, entry: steps[Int(index - 1)]))
        }
    }

    /// The pseudo-client id extension requests carry (they bypass sessions).
    public static func client(origin: UInt32) -> ClientID { .extensionClient(origin: origin) }
}
