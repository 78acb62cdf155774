import Composition
import Services
import Transport

/// A replica's client port.
public struct Endpoint: Hashable, Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String = "127.0.0.1", port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { "\(host):\(port)" }
}

/// Where a cluster's replicas take clients, and how commands map onto its groups.
public struct ClusterEndpoints: Hashable, Sendable {
    /// The identity every connection's handshake presents; replicas refuse any other.
    public var cluster: ClusterIdentity
    /// Each group's replicas' client ports, by group, then replica index within the group.
    public var groups: [[Endpoint]]
    /// Which group serves which command: the cluster's composition (one group serving every
    /// service by default).
    public var composition: CompositionSpec

    /// - Parameters:
    ///   - cluster: the cluster's name, as its cluster file spells it.
    ///   - clusterID: the cluster's id; nil derives it from the name, as replicas do when their
    ///     cluster file names none.
    ///   - composition: required when there is more than one group.
    public init(cluster: String, clusterID: UInt64? = nil, groups: [[Endpoint]], composition: CompositionSpec? = nil) {
        self.cluster = clusterID.map { ClusterIdentity(name: cluster, id: $0) } ?? ClusterIdentity(name: cluster)
        self.groups = groups
        self.composition = composition ?? CompositionSpec(
            name: cluster,
            groups: [CompositionSpec.Group(name: "group", replicas: groups.first?.count ?? 0, toleratedFailures: ((groups.first?.count ?? 1) - 1) / 2,
                                           mode: .multiLeader, services: CompositionSpec.services)],
            extendPutsIntoLog: false, partition: nil)
    }

    /// One group, its replicas' client ports on `host`.
    public init(cluster: String, clusterID: UInt64? = nil, host: String = "127.0.0.1", ports: [Int]) {
        self.init(cluster: cluster, clusterID: clusterID, groups: [ports.map { Endpoint(host: host, port: $0) }])
    }

    /// What is wrong with these endpoints, if anything.
    var problem: String? {
        if groups.isEmpty || groups.contains(where: \.isEmpty) { return "every group needs at least one replica endpoint" }
        if groups.count != composition.groups.count {
            return "\(groups.count) group(s) of endpoints for a composition of \(composition.groups.count)"
        }
        return nil
    }
}

/// How a `CSMRClient` behaves. The defaults suit a cluster on one LAN.
public struct CSMRClientOptions: Sendable {
    /// Sessions per client, each with one request outstanding per group: how many calls to one
    /// group can be in flight at once. Further calls wait, in order, behind one of them.
    /// Recommended 1–64; at least 1.
    public var sessions: Int = 8
    /// Resend an unanswered request (same session, same sequence) to the group's next replica
    /// after this long. Recommended a few times the group's commit latency.
    public var retryTimeout: Duration = .milliseconds(250)
    /// How long a call may take, retries included, unless the call says otherwise.
    public var callTimeout: Duration = .seconds(10)
    /// How often timeouts are checked: the resolution of both timeouts above.
    public var tickInterval: Duration = .milliseconds(5)
    /// Calls waiting behind one session's outstanding request in one group; more fail with
    /// `CSMRClientError.busy`.
    public var waitingCallsMax: Int = 4_096
    /// After a failed dial, a replica is not dialed again for this long (requests for it are
    /// dropped and retried elsewhere).
    public var redialDelay: Duration = .milliseconds(500)
    /// Seeds the session nonces; nil draws them from the system's random source. A fixed seed is
    /// for tests: two clients with one seed collide.
    public var nonceSeed: UInt64?
    /// One line per connection event worth knowing (refusals, lost connections).
    public var log: @Sendable (String) -> Void = { _ in }
    /// Emulated one-way delay of this client's link to each replica, by group, then replica index
    /// (missing entries: none), in microseconds: requests and replies each wait it on the
    /// client's side, as the load generator's clients do with a group `network`
    /// (`ClientPlacement.delayMicroseconds`). For wide-area experiments on one machine.
    public var linkDelayMicroseconds: [[Int64]] = []

    public init() {}
}

/// Why a call failed.
public enum CSMRClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The call's timeout passed. `sent`: the request reached the network, so it may have
    /// executed (a retry of it is never sent again after this).
    case timedOut(sent: Bool)
    /// Too many calls were waiting.
    case busy
    /// The service refused the command (`sessionExpired` included: it was not executed).
    case refused(ServiceError)
    /// A reply of the wrong shape for the command: a bug in the client or the replica.
    case unexpectedReply(Reply)
    /// `openSession` and `logAppendFrom` are not client calls.
    case notAClientCommand(Command)
    /// No replica of `group` accepted a connection.
    case unreachable(group: Int)
    case invalidEndpoints(String)
    /// The client was closed.
    case closed

    public var description: String {
        switch self {
        case let .timedOut(sent): sent ? "timed out (the request may have executed)" : "timed out before the request was sent"
        case .busy: "too many calls waiting"
        case let .refused(error): "refused: \(error)"
        case let .unexpectedReply(reply): "unexpected reply \(reply)"
        case let .notAClientCommand(command): "\(command) is not a client command"
        case let .unreachable(group): "no replica of group \(group) accepted a connection"
        case let .invalidEndpoints(problem): "invalid endpoints: \(problem)"
        case .closed: "the client is closed"
        }
    }
}

extension Duration {
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds)) / 1_000_000_000
    }
}
