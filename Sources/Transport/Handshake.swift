import Primitives

// The first frame on every connection: who is dialing, and into which cluster and group.
//
//     frame kind 0x10, payload:
//     protocol:u16  clusterName:string  clusterID:u64  role:u8  group:u32  replica:u32
//
// Only the dialing side sends one; the accepting side checks it (`HandshakeExpectation`) before it
// reads anything else from the connection, and closes the connection on any mismatch. A one-way
// handshake costs no round trip: the dialer may send frames right after it, and if it is refused,
// those frames are lost with the connection (Paxos retransmits; a client retries).
//
// The pure codec lives here so it is tested on bytes; nothing in this file touches NIO.

/// Which cluster a process belongs to. Two clusters on one machine (or a stale configuration) must
/// never exchange frames, so both the name and a 64-bit id travel in the handshake.
public struct ClusterIdentity: Hashable, Sendable, CustomStringConvertible {
    /// A human-readable name, at most `Handshake.clusterNameBytesMax` UTF-8 bytes.
    public var name: String
    public var id: UInt64

    /// A configured id.
    public init(name: String, id: UInt64) {
        self.name = name
        self.id = id
    }

    /// The id derived from the name (FNV-1a 64 of its UTF-8 bytes), for configurations that name
    /// the cluster only.
    public init(name: String) {
        self.init(name: name, id: Digest(of: Array(name.utf8)).value)
    }

    public var description: String { "\(name)#\(String(id, radix: 16))" }
}

/// What the dialer of a connection is.
public enum ConnectionRole: UInt8, Hashable, Sendable, CustomStringConvertible {
    /// A replica of the group, on the peer port.
    case peer = 1
    /// A client (or the proxy), on the client port.
    case client = 2
    /// A replica of another group of the cluster that carries extension steps into this group,
    /// on the peer port; `group` and `replica` name the dialer (the origin group and its replica).
    case extensionOrigin = 3

    public var description: String {
        switch self {
        case .peer: "peer"
        case .client: "client"
        case .extensionOrigin: "extension origin"
        }
    }
}

public struct Handshake: Hashable, Sendable, CustomStringConvertible {
    /// The transport protocol this build speaks. Bumped when the meaning of frames changes in a
    /// way the wire version byte does not cover.
    public static let protocolVersionCurrent: UInt16 = 1
    /// The frame kind of a handshake. Reserved on every stream: no other message may use it.
    public static let frameKind: UInt8 = 0x10
    /// Longest cluster name, in UTF-8 bytes.
    public static let clusterNameBytesMax = 256
    /// Longest handshake payload (protocol, name with its length, id, role, group, replica).
    public static let payloadBytesMax = 2 + 4 + clusterNameBytesMax + 8 + 1 + 4 + 4

    public var protocolVersion: UInt16
    public var cluster: ClusterIdentity
    public var role: ConnectionRole
    /// The replica group the dialer belongs to (peer) or wants to talk to (client).
    public var group: UInt32
    /// The dialer's replica id (peers and extension origins); 0 and ignored for clients.
    public var replica: UInt32

    public init(protocolVersion: UInt16 = Handshake.protocolVersionCurrent, cluster: ClusterIdentity, role: ConnectionRole,
                group: UInt32, replica: UInt32 = 0) {
        precondition(cluster.name.utf8.count <= Handshake.clusterNameBytesMax,
                     "cluster name of \(cluster.name.utf8.count) bytes exceeds \(Handshake.clusterNameBytesMax)")
        self.protocolVersion = protocolVersion
        self.cluster = cluster
        self.role = role
        self.group = group
        self.replica = replica
    }

    public var description: String {
        "\(role) of cluster \(cluster) group \(group)" + (role == .client ? "" : " replica \(replica)") + " protocol \(protocolVersion)"
    }

    /// The payload of the handshake frame.
    public func encodePayload() -> [UInt8] {
        var writer = ByteWriter(capacity: 32 + cluster.name.utf8.count)
        writer.write(protocolVersion)
        writer.write(cluster.name)
        writer.write(cluster.id)
        writer.write(role.rawValue)
        writer.write(group)
        writer.write(replica)
        return writer.bytes
    }

    /// The whole frame (length, wire version, kind, payload), ready to write.
    public func encodeFrame() -> [UInt8] {
        FrameEncoding.frame(kind: Handshake.frameKind, payload: encodePayload())
    }

    /// Decodes a payload from untrusted bytes: never traps, and refuses trailing bytes.
    public static func decode(payload: some Collection<UInt8>) throws(HandshakeError) -> Handshake {
        guard payload.count <= payloadBytesMax else {
            throw .malformed(.lengthTooLarge(offset: 0, length: payload.count, limit: payloadBytesMax))
        }
        var reader = ByteReader(Array(payload))
        do throws(DecodeError) {
            let version = try reader.readUInt16()
            let name = try reader.readString(maxBytes: clusterNameBytesMax)
            let id = try reader.readUInt64()
            let roleOffset = reader.offset
            let roleByte = try reader.readUInt8()
            guard let role = ConnectionRole(rawValue: roleByte) else {
                throw .unknownTag(offset: roleOffset, tag: roleByte, type: "connection role")
            }
            let group = try reader.readUInt32()
            let replica = try reader.readUInt32()
            try reader.expectEnd()
            return Handshake(protocolVersion: version, cluster: ClusterIdentity(name: name, id: id), role: role,
                             group: group, replica: replica)
        } catch {
            throw .malformed(error)
        }
    }
}

/// Why a connection's handshake was refused. Each case names what was wrong, for the log line.
public enum HandshakeError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The first frame was of another kind.
    case notAHandshake(kind: UInt8)
    /// A second handshake arrived on an established connection.
    case repeated
    case malformed(DecodeError)
    case protocolVersion(got: UInt16, expected: UInt16)
    case cluster(got: ClusterIdentity, expected: ClusterIdentity)
    case group(got: UInt32, expected: UInt32)
    case role(got: ConnectionRole, expected: ConnectionRole)
    /// A peer handshake naming a replica this side does not accept connections from.
    case replica(UInt32, reason: String)

    public var description: String {
        switch self {
        case let .notAHandshake(kind): "expected a handshake (kind \(Handshake.frameKind)) first, got a frame of kind \(kind)"
        case .repeated: "a second handshake on an established connection"
        case let .malformed(error): "malformed handshake: \(error)"
        case let .protocolVersion(got, expected): "wrong protocol version \(got), expected \(expected)"
        case let .cluster(got, expected): "wrong cluster identity \(got), expected \(expected)"
        case let .group(got, expected): "wrong group \(got), expected \(expected)"
        case let .role(got, expected): "wrong role \(got), expected \(expected)"
        case let .replica(replica, reason): "replica \(replica) refused: \(reason)"
        }
    }
}

/// What an accepting side requires of a handshake, apart from the replica check a peer link adds.
public struct HandshakeExpectation: Hashable, Sendable {
    public var cluster: ClusterIdentity
    public var group: UInt32
    public var role: ConnectionRole
    public var protocolVersion: UInt16

    public init(cluster: ClusterIdentity, group: UInt32, role: ConnectionRole,
                protocolVersion: UInt16 = Handshake.protocolVersionCurrent) {
        self.cluster = cluster
        self.group = group
        self.role = role
        self.protocolVersion = protocolVersion
    }

    /// Checks in the order that gives the most useful message: a peer of another protocol version
    /// may encode the rest differently, so the version comes first.
    public func check(_ handshake: Handshake) throws(HandshakeError) {
        guard handshake.protocolVersion == protocolVersion else {
            throw .protocolVersion(got: handshake.protocolVersion, expected: protocolVersion)
        }
        guard handshake.cluster == cluster else { throw .cluster(got: handshake.cluster, expected: cluster) }
        guard handshake.group == group else { throw .group(got: handshake.group, expected: group) }
        guard handshake.role == role else { throw .role(got: handshake.role, expected: role) }
    }
}
