import Primitives
import Services

// What a replica's client port says besides replies: redirects, and which requests it refuses.
// docs/protocol.md is the specification; this file is its code.

/// "Send this request elsewhere": the request was neither executed nor refused, so the client
/// sends it again, unchanged (same session, same sequence), to another replica.
///
///     frame kind 4, payload:  client:u64  sequence:u64  reason:u8  replica:u32
///
/// `replica` is an index within the group, or `Redirect.noReplica` (0xFFFF_FFFF) when the replica
/// has no better idea than "another one, later".
public struct Redirect: Hashable, Sendable, CustomStringConvertible {
    public enum Reason: UInt8, Hashable, Sendable, CustomStringConvertible {
        /// Single-leader: this replica does not lead; `replica` is the one it believes does.
        case notLeader = 1
        /// The group cannot decide anything now (no quorum reachable from here).
        case unavailable = 2
        /// The replica's proposal queue is full and the request was dropped.
        case overloaded = 3

        public var description: String {
            switch self {
            case .notLeader: "not the leader"
            case .unavailable: "group unavailable"
            case .overloaded: "overloaded"
            }
        }
    }

    /// The `replica` value that names no replica.
    public static let noReplica = UInt32.max

    public var client: ClientID
    public var sequence: UInt64
    public var reason: Reason
    /// The replica to try (an index within the group), nil for none in particular.
    public var replica: UInt32?

    public init(client: ClientID, sequence: UInt64, reason: Reason, replica: UInt32?) {
        precondition(replica != Redirect.noReplica, "replica \(Redirect.noReplica) is reserved for no replica")
        self.client = client
        self.sequence = sequence
        self.reason = reason
        self.replica = replica
    }

    /// A redirect answering `request`.
    public init(answering request: Request, reason: Reason, replica: UInt32?) {
        self.init(client: request.client, sequence: request.sequence, reason: reason, replica: replica)
    }

    public var description: String {
        "redirect \(client)#\(sequence): \(reason)" + (replica.map { ", try replica \($0)" } ?? "")
    }

    func encode(into writer: inout ByteWriter) {
        writer.write(client.rawValue)
        writer.write(sequence)
        writer.write(reason.rawValue)
        writer.write(replica ?? Redirect.noReplica)
    }

    static func decode(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> Redirect {
        let client = ClientID(try reader.readUInt64())
        let sequence = try reader.readUInt64()
        let at = reader.offset
        let tag = try reader.readUInt8()
        guard let reason = Reason(rawValue: tag) else { throw .unknownTag(offset: at, tag: tag, type: "redirect reason") }
        let replicaAt = reader.offset
        let replica = try reader.readUInt32()
        guard replica == noReplica || Int(replica) <= limits.replicaIDMax else {
            throw .invalidValue(offset: replicaAt, reason: "replica \(replica) exceeds \(limits.replicaIDMax)")
        }
        return Redirect(client: client, sequence: sequence, reason: reason, replica: replica == noReplica ? nil : replica)
    }
}

/// Which requests a client port executes. Pure, so the replica (and `csmr proxy`) apply the same
/// rule and it is tested without sockets.
public enum ClientPortPolicy {
    /// nil to admit `request`; otherwise the reply to send instead of executing it.
    ///
    /// Refused with `notPermitted`:
    /// - `logAppendFrom`: extension steps come only from the origin group's replicas, over peer
    ///   links. From a client they would be forgeable log entries that bypass sessions
    ///   (docs/protocol.md, "Extension steps").
    /// - `openSession` whose client id is not a nonce (`ClientID.nonceRange`): the proposer
    ///   de-duplicates on (client, sequence), so an opening that borrowed a session's id could
    ///   shadow that session's request.
    public static func admit(_ request: Request) -> Reply? {
        switch request.command {
        case .logAppendFrom: return .failure(.notPermitted)
        case .openSession: return request.client.isNonce ? nil : .failure(.notPermitted)
        case .kvGet, .kvPut, .lockAcquire, .lockRelease, .logAppend, .logRetrieve, .logTruncate: return nil
        }
    }
}
