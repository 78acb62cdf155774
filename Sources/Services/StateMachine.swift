import Primitives

/// The replicated state of one replica: the three services and the session table.
///
/// Deterministic: the same requests in the same order give the same replies and the same digest on
/// every replica. `apply` is the sequential reference every parallel executor must match.
public struct StateMachine: Hashable, Sendable {
    public private(set) var kv = KeyValueStore()
    public private(set) var locks = LockTable()
    public private(set) var log = ReplicatedLog()
    public private(set) var sessions: SessionTable
    public let limits: ServiceLimits

    /// Gives this copy storage of its own for the tables it shares with another copy (see
    /// `ShardedTable.unshare`); the log's chunks stay shared (only the last one is ever written).
    public mutating func unshareTables() {
        kv.unshare()
        locks.unshare()
        sessions.unshare()
    }

    /// Snapshot format version, first byte of every snapshot.
    public static let snapshotVersion: UInt8 = 1

    /// Keys, held locks, retained log entries and sessions: what a snapshot encodes one by one.
    public var itemCount: Int { kv.entries.count + locks.holders.count + log.count + sessions.entries.count }

    public init(limits: ServiceLimits = ServiceLimits()) {
        self.limits = limits
        sessions = SessionTable(sessionsMax: limits.sessionsMax)
    }

    /// A state machine assembled from parts kept elsewhere (a parallel executor's partitions).
    public init(kv: KeyValueStore, locks: LockTable, log: ReplicatedLog, sessions: SessionTable, limits: ServiceLimits) {
        self.kv = kv
        self.locks = locks
        self.log = log
        self.sessions = sessions
        self.limits = limits
    }

    /// Executes `request` at most once: a retry of the session's latest request gets the stored
    /// reply and changes nothing.
    public mutating func apply(_ request: Request) -> Reply { applyReportingExecution(request).reply }

    /// `apply`, also saying whether the command ran (false for a retry answered from the session
    /// table and for a refusal), which the replica needs to number extension steps.
    public mutating func applyReportingExecution(_ request: Request) -> (reply: Reply, executed: Bool) {
        if case .logAppendFrom = request.command { return (log.execute(request.command, retrieveLimit: limits.retrieveEntriesMax)!, true) }
        switch sessions.verdict(for: request) {
        case let .duplicate(reply): return (reply, false)
        case let .reject(error): return (.failure(error), false)
        case .execute:
            if case .openSession = request.command { return (.session(sessions.open()), true) }
            let reply = execute(request.command, client: request.client)
            sessions.record(request, reply: reply)
            return (reply, true)
        }
    }

    /// Runs one service command, bypassing the session table. Parallel executors call this for
    /// commands the session table has already admitted; `openSession` goes through `apply`.
    public mutating func execute(_ command: Command, client: ClientID) -> Reply {
        switch command.service {
        case .kv: return kv.execute(command)!
        case .lock: return locks.execute(command, client: client)!
        case .log: return log.execute(command, retrieveLimit: limits.retrieveEntriesMax)!
        case .session: preconditionFailure("openSession for \(client) must go through apply, which owns the session table")
        }
    }

    /// Session bookkeeping for a request executed elsewhere (by a parallel executor).
    public mutating func recordSession(_ request: Request, reply: Reply) {
        sessions.record(request, reply: reply)
    }

    public func sessionVerdict(for request: Request) -> SessionTable.Verdict { sessions.verdict(for: request) }

    // MARK: Snapshots and digests

    /// A canonical snapshot: equal states give equal bytes. `canonical: false` skips sorting the
    /// key-value store and the lock table (checkpoints: the bytes only need to restore the same
    /// state, and sorting a large store cost most of a checkpoint's time on the replica's loop).
    public func snapshot(canonical: Bool = true) -> [UInt8] {
        var writer = ByteWriter(capacity: 1024)
        writer.write(Self.snapshotVersion)
        kv.encode(into: &writer, canonical: canonical)
        locks.encode(into: &writer, canonical: canonical)
        log.encode(into: &writer)
        sessions.encode(into: &writer)
        return writer.bytes
    }

    /// Restores a snapshot taken by `snapshot()`. Bad bytes give a typed error.
    public init(snapshot bytes: [UInt8], limits: ServiceLimits = ServiceLimits(), codec: CodecLimits = .standard) throws(DecodeError) {
        var reader = ByteReader(bytes)
        let version = try reader.readUInt8()
        guard version == Self.snapshotVersion else {
            throw .invalidValue(offset: 0, reason: "snapshot version \(version), expected \(Self.snapshotVersion)")
        }
        self.limits = limits
        kv = try KeyValueStore.decode(from: &reader, limits: codec)
        locks = try LockTable.decode(from: &reader, limits: codec)
        log = try ReplicatedLog.decode(from: &reader, limits: codec)
        sessions = try SessionTable.decode(from: &reader, sessionsMax: limits.sessionsMax, limits: codec)
        try reader.expectEnd()
    }

    /// Digest of the whole state, sessions included.
    public var digest: Digest { Digest(of: snapshot()) }
}
