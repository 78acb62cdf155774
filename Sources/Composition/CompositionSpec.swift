import Foundation
import Paxos
import Primitives
import Services
import SpecFiles
import Yams

/// A composed service: several replica groups, the services each runs, and how client operations
/// map onto them (see docs/composition.md).
public struct CompositionSpec: Hashable, Sendable {
    public struct Group: Hashable, Sendable {
        public var name: String
        public var replicas: Int
        public var toleratedFailures: Int
        public var mode: LeadershipMode
        public var services: [ServiceKind]
        public var batchCommandsMax: Int
        public var pipelineDepthMax: Int

        public init(name: String, replicas: Int, toleratedFailures: Int, mode: LeadershipMode, services: [ServiceKind],
                    batchCommandsMax: Int = 64, pipelineDepthMax: Int = 16) {
            self.name = name
            self.replicas = replicas
            self.toleratedFailures = toleratedFailures
            self.mode = mode
            self.services = services
            self.batchCommandsMax = batchCommandsMax
            self.pipelineDepthMax = pipelineDepthMax
        }
    }

    /// How one service's key space is split over groups.
    public enum Partitioning: Hashable, Sendable {
        /// Key → group `hash(key) mod count`, over `groups` in order.
        case hash(groups: [Int])
        /// Sorted by key: `bounds[i]` is the exclusive upper bound of `groups[i]`; the last group
        /// takes everything from the last bound up.
        case range(groups: [Int], bounds: [String])
        /// The one prefix a key starts with (the prefixes are prefix-free, so there is at most
        /// one), else the default group.
        case prefix(prefixes: [(prefix: String, group: Int)], defaultGroup: Int)

        public static func == (lhs: Partitioning, rhs: Partitioning) -> Bool { "\(lhs)" == "\(rhs)" }
        public func hash(into hasher: inout Hasher) { hasher.combine("\(self)") }
    }

    public var name: String
    public var groups: [Group]
    /// Each `kv.put` also appends to the log (in the group serving the log), in the kv group's
    /// decided order, exactly once.
    public var extendPutsIntoLog: Bool
    /// The partitioned service and its rule, if any.
    public var partition: (service: ServiceKind, rule: Partitioning)?

    public init(name: String, groups: [Group], extendPutsIntoLog: Bool, partition: (service: ServiceKind, rule: Partitioning)?) {
        self.name = name
        self.groups = groups
        self.extendPutsIntoLog = extendPutsIntoLog
        self.partition = partition
    }

    public static func == (lhs: CompositionSpec, rhs: CompositionSpec) -> Bool {
        lhs.name == rhs.name && lhs.groups == rhs.groups && lhs.extendPutsIntoLog == rhs.extendPutsIntoLog
            && lhs.partition?.service == rhs.partition?.service && lhs.partition?.rule == rhs.partition?.rule
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(name) }

    /// `monolithic`, `addition`, `extension` or `partition`: the strategy the spec follows.
    public var strategy: String {
        if partition != nil { return "partition" }
        if extendPutsIntoLog { return "extension" }
        if groups.count == 1 { return "monolithic" }
        return "addition"
    }

    /// The single group serving `service` when it is not partitioned.
    public func group(serving service: ServiceKind) -> Int? {
        groups.firstIndex { $0.services.contains(service) }
    }

    public func paxosConfig(of group: Int, simulated: Bool) -> PaxosConfig {
        let spec = groups[group]
        return .preset(replicaCount: spec.replicas, mode: spec.mode, batchCommandsMax: spec.batchCommandsMax,
                       pipelineDepthMax: spec.pipelineDepthMax, clock: simulated ? .simulated : .realTime)
    }
}

extension CompositionSpec {
    public static let services: [ServiceKind] = [.kv, .lock, .log]

    /// Reads and checks a composition. Every rule broken is reported with the file, the line and
    /// the rule: an operation no group serves; a group with fewer than 2f + 1 replicas; one
    /// service's state in two groups without a partition; partition rules that overlap or leave
    /// keys uncovered.
    public static func parse(_ text: String, file: String) throws(SpecErrors) -> CompositionSpec {
        let root = try YAMLFields.parse(text, file: file)
        let name = root.string("name", default: URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent)
        var groups: [Group] = []
        var groupNodes: [YAMLFields] = []
        let groupList = root.sequence("groups")
        if groupList.isEmpty { root.fail(root.value("groups"), field: "groups", "at least one group is required") }
        for (path, node) in groupList {
            guard let fields = root.fields(of: node, path: path) else { continue }
            let groupName = fields.string("name", default: "g\(groups.count)")
            let replicas = fields.int("replicas", default: 3, range: 1...15)
            let tolerated = fields.int("tolerate_failures", default: (replicas - 1) / 2, range: 0...7)
            if replicas < 2 * tolerated + 1 {
                fields.fail(fields.has("replicas") ? fields.value("replicas") : node, field: "\(path).replicas",
                            "rule: a group tolerating f = \(tolerated) failures needs 2f + 1 = \(2 * tolerated + 1) replicas, it has \(replicas)")
            } else if replicas % 2 == 0 {
                fields.fail(fields.value("replicas"), field: "\(path).replicas", "rule: replicas must be odd (n = 2f + 1), got \(replicas)")
            }
            let mode = fields.choice("protocol", default: LeadershipMode.multiLeader)
            var services: [ServiceKind] = []
            for (servicePath, serviceNode) in fields.sequence("services") {
                guard let serviceName = serviceNode.scalar?.string, let service = ServiceKind.allCases.first(where: { "\($0)" == serviceName }),
                      services.count < 3, service != .session else {
                    fields.fail(serviceNode, field: servicePath, "expected one of kv, lock, log")
                    continue
                }
                if services.contains(service) { fields.fail(serviceNode, field: servicePath, "\(service) is listed twice") }
                services.append(service)
            }
            if !fields.has("services") { fields.fail(node, field: "\(path).services", "is required: the services this group runs") }
            if groups.contains(where: { $0.name == groupName }) { fields.fail(fields.value("name"), field: "\(path).name", "another group is named \(groupName)") }
            let batch = fields.int("batch_commands_max", default: 64, range: 1...65_536)
            let pipeline = fields.int("pipeline_depth_max", default: 16, range: 1...4_096)
            fields.rejectUnknown(expected: ["name", "replicas", "tolerate_failures", "protocol", "services", "batch_commands_max", "pipeline_depth_max"])
            groups.append(Group(name: groupName, replicas: replicas, toleratedFailures: tolerated, mode: mode, services: services,
                                batchCommandsMax: batch, pipelineDepthMax: pipeline))
            groupNodes.append(fields)
        }

        // Partition.
        var partition: (service: ServiceKind, rule: Partitioning)?
        if let fields = root.mapping("partition") {
            partition = readPartition(fields, groups: groups)
        }

        // Every operation needs a group; a service in several groups needs a partition.
        for service in services {
            let serving = groups.indices.filter { groups[$0].services.contains(service) }
            if serving.isEmpty {
                let operations = operationNames(of: service).joined(separator: ", ")
                root.fail(root.value("groups"), field: "groups", "rule: every operation needs a group, but \(operations) are served by no group")
            } else if serving.count > 1, partition?.service != service {
                let names = serving.map { groups[$0].name }.joined(separator: ", ")
                root.fail(root.value("groups"), field: "groups",
                          "rule: one state, one group: \(service) is served by \(names) without a partition rule for it")
            }
            if let partition, partition.service == service {
                let partitionGroups = Set(partitionGroupsOf(partition.rule))
                if Set(serving) != partitionGroups {
                    let listed = serving.map { groups[$0].name }.sorted().joined(separator: ", ")
                    root.fail(root.value("partition"), field: "partition",
                              "rule: the partition's groups must be exactly the groups serving \(service) (\(listed))")
                }
            }
        }

        var extend = false
        for (path, node) in root.sequence("extend") {
            guard let fields = root.fields(of: node, path: path) else { continue }
            let operation = fields.string("operation", default: "")
            let into = fields.string("into", default: "")
            fields.rejectUnknown(expected: ["operation", "into"])
            guard operation == "kv.put", into == "log.append" else {
                fields.fail(node, field: path, "rule: only kv.put into log.append is supported, got \(operation) into \(into)")
                continue
            }
            if partition?.service == .kv || partition?.service == .log {
                fields.fail(node, field: path, "rule: extension needs one kv group and one log group; \(partition!.service) is partitioned")
            }
            extend = true
        }
        root.rejectUnknown(expected: ["name", "groups", "partition", "extend"])
        guard root.errors.isEmpty else { throw SpecErrors(errors: root.errors) }
        return CompositionSpec(name: name, groups: groups, extendPutsIntoLog: extend, partition: partition)
    }

    static func operationNames(of service: ServiceKind) -> [String] {
        switch service {
        case .kv: ["kv.get", "kv.put"]
        case .lock: ["lock.acquire", "lock.release"]
        case .log: ["log.append", "log.retrieve", "log.truncate"]
        case .session: []
        }
    }

    static func partitionGroupsOf(_ rule: Partitioning) -> [Int] {
        switch rule {
        case let .hash(groups): groups
        case let .range(groups, _): groups
        case let .prefix(prefixes, defaultGroup): prefixes.map(\.group) + [defaultGroup]
        }
    }

    private static func readPartition(_ fields: YAMLFields, groups: [Group]) -> (ServiceKind, Partitioning)? {
        let serviceName = fields.choice("service", default: "kv", from: ["kv", "lock", "log"])
        let service: ServiceKind = serviceName == "kv" ? .kv : serviceName == "lock" ? .lock : .log
        if service == .log {
            fields.fail(fields.value("service"), field: fields.qualified("service"), "rule: the log is one object (an append's index depends on all earlier ones) and cannot be partitioned")
        }
        let by = fields.choice("by", default: "hash", from: ["hash", "range", "prefix"])
        func groupIndex(_ name: String, _ node: Node?, _ field: String) -> Int? {
            guard let index = groups.firstIndex(where: { $0.name == name }) else {
                fields.fail(node, field: field, "no group is named \(name)")
                return nil
            }
            return index
        }
        defer { fields.rejectUnknown(expected: ["service", "by", "groups", "ranges", "prefixes", "default"]) }
        switch by {
        case "hash":
            var members: [Int] = []
            for (path, node) in fields.sequence("groups") {
                guard let index = groupIndex(node.scalar?.string ?? "", node, path) else { continue }
                if members.contains(index) { fields.fail(node, field: path, "rule: partitions overlap: \(groups[index].name) is listed twice") }
                members.append(index)
            }
            if members.count < 2 { fields.fail(fields.value("groups"), field: fields.qualified("groups"), "a hash partition needs at least two groups") }
            return (service, .hash(groups: members))
        case "range":
            var members: [Int] = [], bounds: [String] = []
            let ranges = fields.sequence("ranges")
            for (offset, (path, node)) in ranges.enumerated() {
                guard let range = fields.fields(of: node, path: path) else { continue }
                let groupName = range.string("group", default: "")
                if let index = groupIndex(groupName, range.value("group"), "\(path).group") { members.append(index) }
                let isLast = offset == ranges.count - 1
                if range.has("below") {
                    let bound = range.string("below", default: "")
                    if isLast {
                        range.fail(range.value("below"), field: "\(path).below", "rule: keys from \"\(bound)\" up are uncovered; the last range must have no upper bound")
                    } else if let previous = bounds.last, bound <= previous {
                        range.fail(range.value("below"), field: "\(path).below", "rule: ranges overlap: \"\(bound)\" is not above the previous bound \"\(previous)\"")
                    }
                    bounds.append(bound)
                } else if !isLast {
                    range.fail(node, field: "\(path).below", "rule: ranges overlap: only the last range may be unbounded")
                }
                range.rejectUnknown(expected: ["group", "below"])
            }
            if ranges.count < 2 { fields.fail(fields.value("ranges"), field: fields.qualified("ranges"), "a range partition needs at least two ranges") }
            return (service, .range(groups: members, bounds: Array(bounds.prefix(max(0, members.count - 1)))))
        default:
            var prefixes: [(String, Int)] = []
            if let mapping = fields.mapping("prefixes") {
                for groupName in mapping.keys {
                    let node = mapping.value(groupName)
                    guard let index = groupIndex(groupName, node, mapping.qualified(groupName)) else { continue }
                    for (path, prefixNode) in mapping.sequence(groupName) {
                        let prefix = prefixNode.scalar?.string ?? ""
                        if let clash = prefixes.first(where: { $0.0.hasPrefix(prefix) || prefix.hasPrefix($0.0) }) {
                            mapping.fail(prefixNode, field: path, "rule: partitions overlap: prefix \"\(prefix)\" and prefix \"\(clash.0)\" (of \(groups[clash.1].name)) both match some keys")
                        }
                        prefixes.append((prefix, index))
                    }
                }
            }
            guard fields.has("default") else {
                fields.fail(fields.value("by"), field: fields.qualified("default"), "rule: keys matching no prefix are uncovered; name a default group")
                return (service, .prefix(prefixes: prefixes, defaultGroup: 0))
            }
            let defaultGroup = groupIndex(fields.string("default", default: ""), fields.value("default"), fields.qualified("default")) ?? 0
            return (service, .prefix(prefixes: prefixes, defaultGroup: defaultGroup))
        }
    }
}
