import Foundation
import Primitives

/// A cluster file: the cluster's name, its replica groups, each replica's peer and client
/// addresses, and the group settings (protocol, batching, pipelining, durability, execution).
/// `csmr replica --cluster FILE --id N` runs one replica of it; the harness writes one for the
/// processes it starts. Documented in docs/protocol.md.
///
///     cluster: demo
///     groups:
///       - name: main
///         protocol: multi-leader
///         durability: fsync
///         replicas:
///           - {peer: 127.0.0.1:7101, client: 127.0.0.1:7201}
///           - {peer: 127.0.0.1:7102, client: 127.0.0.1:7202}
///           - {peer: 127.0.0.1:7103, client: 127.0.0.1:7203}
///         network: {locations: [a, b, c], delay_ms: 20}   # optional emulated link delays
public struct ClusterSpec: Hashable, Sendable {
    public struct Address: Hashable, Sendable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        public var description: String { "\(host):\(port)" }

        /// `host:port`, or `port` alone (then the host is 127.0.0.1).
        public static func parse(_ text: String) -> Address? {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            switch parts.count {
            case 1: return Int(parts[0]).flatMap { (1...65_535).contains($0) ? Address(host: "127.0.0.1", port: $0) : nil }
            case 2:
                guard !parts[0].isEmpty, let port = Int(parts[1]), (1...65_535).contains(port) else { return nil }
                return Address(host: String(parts[0]), port: port)
            default: return nil
            }
        }
    }

    public struct Replica: Hashable, Sendable {
        public var peer: Address
        public var client: Address

        public init(peer: Address, client: Address) {
            self.peer = peer
            self.client = client
        }
    }

    public struct Group: Hashable, Sendable {
        public var name: String
        /// Protocol, batching, pipelining, durability and execution (its `replicas` count is
        /// `replicas.count`).
        public var settings: GroupSpec
        public var replicas: [Replica]

        public init(name: String, settings: GroupSpec, replicas: [Replica]) {
            self.name = name
            self.settings = settings
            self.replicas = replicas
        }
    }

    public var name: String
    public var groups: [Group]
    /// Where `csmr proxy` listens for clients, if the cluster has a proxy.
    public var proxy: Address?
    /// The composition spec the proxy routes by (its groups are this file's), resolved against
    /// the cluster file's folder.
    public var composition: String?
    public var file = ""

    public init(name: String, groups: [Group], proxy: Address? = nil, composition: String? = nil) {
        self.name = name
        self.groups = groups
        self.proxy = proxy
        self.composition = composition
    }

    public static func load(path: String) throws(SpecErrors) -> ClusterSpec {
        var spec = try parse(try SpecFile.read(path), file: path)
        if let composition = spec.composition, !composition.hasPrefix("/") {
            spec.composition = URL(fileURLWithPath: path).absoluteURL.deletingLastPathComponent().appendingPathComponent(composition).standardized.path
        }
        let folder = URL(fileURLWithPath: path).absoluteURL.deletingLastPathComponent()
        for index in spec.groups.indices {
            if let directory = spec.groups[index].settings.dataDirectory, !directory.hasPrefix("/") {
                spec.groups[index].settings.dataDirectory = folder.appendingPathComponent(directory).standardized.path
            }
        }
        return spec
    }

    public static func parse(_ text: String, file: String) throws(SpecErrors) -> ClusterSpec {
        let root = try YAMLFields.parse(text, file: file)
        let name = root.string("cluster", default: "")
        if name.isEmpty || name.utf8.count > 256 {
            root.fail(root.value("cluster"), field: "cluster", "expected the cluster's name (1 to 256 bytes): peers and clients must present it")
        }
        var groups: [Group] = []
        var seenAddresses: [Address: String] = [:]
        for (path, node) in root.sequence("groups") {
            guard let fields = root.fields(of: node, path: path) else { continue }
            let groupName = fields.string("name", default: "group\(groups.count)")
            if groups.contains(where: { $0.name == groupName }) {
                fields.fail(fields.value("name"), field: fields.qualified("name"), "another group is named \(groupName)")
            }
            var settings = GroupSpec()
            var replicas: [Replica] = []
            for (replicaPath, replicaNode) in fields.sequence("replicas") {
                guard let replicaFields = fields.fields(of: replicaNode, path: replicaPath) else { continue }
                var addresses: [Address] = []
                for key in ["peer", "client"] {
                    let text = replicaFields.string(key, default: "")
                    guard let address = Address.parse(text) else {
                        replicaFields.fail(replicaFields.value(key) ?? replicaNode, field: replicaFields.qualified(key),
                                           "expected host:port (or a port on 127.0.0.1), got \(text.isEmpty ? "nothing" : text)")
                        continue
                    }
                    if let other = seenAddresses[address] {
                        replicaFields.fail(replicaFields.value(key), field: replicaFields.qualified(key), "\(address) is also \(other)")
                    }
                    seenAddresses[address] = replicaFields.qualified(key)
                    addresses.append(address)
                }
                replicaFields.rejectUnknown(expected: ["peer", "client"])
                if addresses.count == 2 { replicas.append(Replica(peer: addresses[0], client: addresses[1])) }
            }
            if replicas.isEmpty || replicas.count % 2 == 0 {
                fields.fail(fields.value("replicas") ?? node, field: fields.qualified("replicas"),
                            "expected an odd number of replicas (n = 2f + 1), each {peer: host:port, client: host:port}; got \(replicas.count)")
            }
            settings.replicas = replicas.count
            // After the replicas: the network names one location per replica.
            settings.readSettings(from: fields)
            fields.rejectUnknown(expected: ["name", "replicas"] + GroupSpec.settingFields)
            groups.append(Group(name: groupName, settings: settings, replicas: replicas))
        }
        if groups.isEmpty, root.errors.isEmpty {
            root.fail(root.value("groups"), field: "groups", "expected at least one group")
        }
        var proxy: Address?
        if root.has("proxy") {
            let text = root.string("proxy", default: "")
            proxy = Address.parse(text)
            if proxy == nil { root.fail(root.value("proxy"), field: "proxy", "expected host:port (or a port on 127.0.0.1), got \(text)") }
        }
        let composition = root.has("composition") ? root.string("composition", default: "") : nil
        root.rejectUnknown(expected: ["cluster", "groups", "proxy", "composition"])
        guard root.errors.isEmpty else { throw SpecErrors(errors: root.errors) }
        var spec = ClusterSpec(name: name, groups: groups, proxy: proxy, composition: composition)
        spec.file = file
        return spec
    }

    /// The cluster file for `self`, as `parse` reads it.
    public var yaml: String {
        var lines = ["cluster: \(SpecFile.quoted(name))", "groups:"]
        for group in groups {
            let settings = group.settings
            lines.append("  - name: \(SpecFile.quoted(group.name))")
            lines.append("    protocol: \(settings.replication.rawValue)")
            lines.append("    batch_commands_max: \(settings.batchCommandsMax)")
            lines.append("    batch_bytes_max: \(settings.batchBytesMax)")
            lines.append("    batch_delay_us: \(settings.batchDelayMicroseconds)")
            lines.append("    pipeline_depth_max: \(settings.pipelineDepthMax)")
            if let hold = settings.batchHoldInflightMin { lines.append("    batch_hold_inflight_min: \(hold)") }
            lines.append("    batch_hold_us: \(settings.batchHoldMicroseconds)")
            lines.append("    skip_ahead_percent: \(settings.skipAheadPercent)")
            lines.append("    scheduler: \(settings.scheduler.rawValue)")
            lines.append("    workers: \(settings.workers)")
            lines.append("    cost_us: \(settings.costMicroseconds)")
            lines.append("    durability: \(settings.durability.rawValue)")
            lines.append("    checkpoint_interval_commands: \(settings.checkpointIntervalCommands)")
            lines.append("    checkpoint_interval_slots: \(settings.checkpointIntervalSlots)")
            if let directory = settings.dataDirectory { lines.append("    data_dir: \(SpecFile.quoted(directory))") }
            if !settings.network.isEmpty { lines.append("    network: \(settings.network.yaml)") }
            lines.append("    replicas:")
            for replica in group.replicas { lines.append("      - {peer: \"\(replica.peer)\", client: \"\(replica.client)\"}") }
        }
        if let proxy { lines.append("proxy: \"\(proxy)\"") }
        if let composition { lines.append("composition: \(SpecFile.quoted(composition))") }
        return lines.joined(separator: "\n") + "\n"
    }
}
