import Yams

/// Where a group's replicas are, and the emulated one-way delay between those places: the
/// `network` field of a group's settings (a workload's `group`, a cluster file's groups).
///
///     network:
///       locations: [virginia, ohio, oregon]   # replica i is at locations[i]
///       delay_ms: 20                          # every pair of different locations not in links
///       links:                                # per pair, both directions
///         - {between: [virginia, ohio], delay_ms: 10}
///
/// The kernel here has no netem, so the delay is emulated by the transports: a replica holds each
/// frame for a peer at another location for the pair's delay before it leaves
/// (`PeerTransportConfig.delayMicroseconds`), and a client at a location holds its requests and
/// the replies it receives for the delay between it and the replica (`FrameClient`). Replicas at
/// one location reach each other at once. Delays are symmetric: a link between a and b delays
/// both directions by the same amount, so a round trip costs twice the one-way delay.
public struct NetworkSpec: Hashable, Sendable {
    /// Each replica's location, by replica id; empty when no network is configured.
    public var locations: [String] = []
    /// One-way delay between two different locations, in microseconds; the key is the pair in
    /// name order (see `key`).
    public var delaysMicroseconds: [String: Int64] = [:]

    public init() {}

    /// - Parameters:
    ///   - locations: each replica's location, by replica id.
    ///   - delaysMicroseconds: one-way delays per unordered pair of different locations; every
    ///     pair must be given.
    public init(locations: [String], delaysMicroseconds: [(String, String, Int64)]) {
        self.locations = locations
        for (a, b, delay) in delaysMicroseconds {
            precondition(a != b && delay >= 0, "a delay needs two different locations and a non-negative value, got \(a), \(b), \(delay) µs")
            self.delaysMicroseconds[Self.key(a, b)] = delay
        }
        let names = distinctLocations
        for (i, a) in names.enumerated() {
            for b in names[(i + 1)...] { precondition(self.delaysMicroseconds[Self.key(a, b)] != nil, "no delay between \(a) and \(b)") }
        }
    }

    /// Whether any delay is emulated (no locations: every link is as fast as the machine).
    public var isEmpty: Bool { locations.isEmpty }

    /// The locations in order of their first replica.
    public var distinctLocations: [String] {
        var seen: Set<String> = []
        return locations.filter { seen.insert($0).inserted }
    }

    static func key(_ a: String, _ b: String) -> String { a < b ? "\(a)\u{0}\(b)" : "\(b)\u{0}\(a)" }

    /// The one-way delay between two locations (0 within one location, or without a network).
    public func delayMicroseconds(from a: String, to b: String) -> Int64 {
        a == b ? 0 : delaysMicroseconds[Self.key(a, b)] ?? 0
    }

    /// The one-way delay between two replicas.
    public func delayMicroseconds(fromReplica a: Int, toReplica b: Int) -> Int64 {
        guard locations.indices.contains(a), locations.indices.contains(b) else { return 0 }
        return delayMicroseconds(from: locations[a], to: locations[b])
    }

    /// The replica a client at `location` sends to first: the lowest-numbered replica there, or
    /// else the nearest one (lowest number among equals).
    public func homeReplica(for location: String) -> Int {
        if let here = locations.firstIndex(of: location) { return here }
        return locations.indices.min { (delayMicroseconds(from: location, to: locations[$0]), $0) < (delayMicroseconds(from: location, to: locations[$1]), $1) } ?? 0
    }

    static let fields = ["locations", "delay_ms", "links"]

    /// Reads the `network` mapping; problems land in `fields`' errors. `replicas` is the group's
    /// size, which `locations` must match.
    static func read(from fields: YAMLFields, replicas: Int) -> NetworkSpec {
        var network = NetworkSpec()
        let errorsBefore = fields.errors.count
        for (path, node) in fields.sequence("locations") {
            guard let name = node.scalar?.string, !name.isEmpty, name.utf8.count <= 64 else {
                fields.fail(node, field: path, "expected a location's name (1 to 64 bytes), got \(YAMLFields.show(node))")
                continue
            }
            network.locations.append(name)
        }
        if !fields.has("locations") {
            // Without names, every replica is its own place: r0, r1, …
            network.locations = (0..<replicas).map { "r\($0)" }
        } else if network.locations.count != replicas, fields.errors.count == errorsBefore {
            fields.fail(fields.value("locations"), field: fields.qualified("locations"),
                        "expected one location per replica (\(replicas)), got \(network.locations.count)")
        }
        let known = Set(network.locations)
        let uniformMicroseconds: Int64? = fields.has("delay_ms")
            ? Int64((fields.double("delay_ms", default: 0, range: 0...10_000, unit: "ms") * 1_000).rounded()) : nil
        var linked: Set<String> = []
        for (path, node) in fields.sequence("links") {
            guard let link = fields.fields(of: node, path: path) else { continue }
            let ends = link.sequence("between")
            let names = ends.compactMap { $0.node.scalar?.string }
            if !link.has("between") || ends.count != 2 || names.count != 2 {
                link.fail(link.value("between") ?? node, field: link.qualified("between"), "expected two locations, e.g. [virginia, ohio]")
            }
            if !link.has("delay_ms") { link.fail(node, field: link.qualified("delay_ms"), "is required: the one-way delay in ms") }
            let delay = Int64((link.double("delay_ms", default: 0, range: 0...10_000, unit: "ms") * 1_000).rounded())
            link.rejectUnknown(expected: ["between", "delay_ms"])
            guard names.count == 2, ends.count == 2 else { continue }
            var valid = true
            for (end, name) in zip(ends, names) where !known.contains(name) {
                link.fail(end.node, field: end.path, "unknown location \(name) (the replicas are at \(network.distinctLocations.joined(separator: ", ")))")
                valid = false
            }
            if names[0] == names[1] {
                link.fail(link.value("between"), field: link.qualified("between"), "a location is 0 ms from itself; name two different ones")
                valid = false
            }
            guard valid else { continue }
            let key = key(names[0], names[1])
            if !linked.insert(key).inserted {
                link.fail(link.value("between"), field: link.qualified("between"), "the link between \(names[0]) and \(names[1]) is given twice")
            }
            network.delaysMicroseconds[key] = delay
        }
        let names = network.distinctLocations
        var missing: [String] = []
        for (i, a) in names.enumerated() {
            for b in names[(i + 1)...] where network.delaysMicroseconds[key(a, b)] == nil {
                if let uniformMicroseconds {
                    network.delaysMicroseconds[key(a, b)] = uniformMicroseconds
                } else {
                    missing.append("\(a)–\(b)")
                }
            }
        }
        if !missing.isEmpty, fields.errors.count == errorsBefore {
            fields.fail(fields.value("links") ?? fields.value("locations"), field: fields.qualified("links"),
                        "no delay between \(missing.joined(separator: ", ")): add a link for each pair, or a default delay_ms")
        }
        fields.rejectUnknown(expected: Self.fields)
        return network
    }

    /// The `network` mapping as `read` takes it (flow style, for cluster files and run.yaml).
    public var yaml: String {
        let names = distinctLocations
        var links: [String] = []
        for (i, a) in names.enumerated() {
            for b in names[(i + 1)...] {
                let milliseconds = Double(delayMicroseconds(from: a, to: b)) / 1_000
                links.append("{between: [\(SpecFile.quoted(a)), \(SpecFile.quoted(b))], delay_ms: \(milliseconds)}")
            }
        }
        return "{locations: [\(locations.map(SpecFile.quoted).joined(separator: ", "))], links: [\(links.joined(separator: ", "))]}"
    }
}

/// Where the load generator's clients are: client i at `locations[i mod count]`, sending first
/// to its home replica in each group (the one at its location) and paying the emulated delay to
/// any other replica in both directions.
public struct ClientPlacement: Hashable, Sendable {
    /// The client locations, in the order clients are dealt to them.
    public var locations: [String]
    /// Each group's network.
    public var networks: [NetworkSpec]

    public init(locations: [String], networks: [NetworkSpec]) {
        precondition(!locations.isEmpty, "a placement needs at least one client location")
        self.locations = locations
        self.networks = networks
    }

    /// The placement a workload asks for: its `clients.locations` (default: every location of the
    /// first group's replicas), over `networks`; nil when no group has a network.
    public static func of(clients: [String], networks: [NetworkSpec]) -> ClientPlacement? {
        guard let first = networks.first(where: { !$0.isEmpty }) else { return nil }
        return ClientPlacement(locations: clients.isEmpty ? first.distinctLocations : clients, networks: networks)
    }

    /// The index (into `locations`) of client `index`'s location: round robin.
    public func location(ofClient index: Int) -> Int { index % locations.count }

    public func homeReplica(location: Int, group: Int) -> Int {
        networks[group].homeReplica(for: locations[location])
    }

    /// One-way delay between a client location and a replica of a group.
    public func delayMicroseconds(location: Int, group: Int, replica: Int) -> Int64 {
        let network = networks[group]
        guard network.locations.indices.contains(replica) else { return 0 }
        return network.delayMicroseconds(from: locations[location], to: network.locations[replica])
    }
}
