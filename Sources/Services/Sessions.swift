import Primitives

/// The replicated client-session table: it makes execution at-most-once.
///
/// Sessions are opened by a replicated `openSession` command, which hands out ids from a counter,
/// as Raft's client sessions do (Ongaro's thesis, §6.3). For each session the table keeps the
/// latest executed sequence number and its reply: a retry of that request is answered from the
/// table, a new sequence is executed. The table is bounded by `ServiceLimits.sessionsMax`; when it
/// is full, opening a session evicts the least recently active one, chosen by a logical clock that
/// advances with every recorded request, so every replica evicts the same one. Because ids are
/// never reused, any request of an evicted session is refused with `sessionExpired` instead of
/// risking a second execution. A retried `openSession` opens a second session; the first is
/// simply never used and ages out.
public struct SessionTable: Hashable, Sendable, CanonicallyEncoded {
    public struct Entry: Hashable, Sendable {
        public var sequence: UInt64
        public var reply: Reply
        public var lastActive: UInt64
    }

    /// What to do with a request.
    public enum Verdict: Hashable, Sendable {
        /// Execute it, then `record` the reply.
        case execute
        /// A retry of the latest request: answer with the stored reply, execute nothing.
        case duplicate(Reply)
        /// Refuse it; execute nothing, record nothing.
        case reject(ServiceError)
    }

    /// Sharded, as `KeyValueStore`'s table: a checkpoint's copy shares it.
    public private(set) var entries: ShardedTable<ClientID, Entry> = [:]

    /// See `ShardedTable.unshare`.
    public mutating func unshare() { entries.unshare() }
    /// Logical time: the number of requests recorded so far.
    public private(set) var clock: UInt64 = 0
    /// The id the next opened session gets.
    public private(set) var nextSession: UInt64 = 1
    public let sessionsMax: Int

    public init(sessionsMax: Int) {
        precondition(sessionsMax >= 1, "sessionsMax must be at least 1, got \(sessionsMax)")
        self.sessionsMax = sessionsMax
    }

    public func verdict(for request: Request) -> Verdict {
        if case .openSession = request.command { return .execute }
        guard let entry = entries[request.client] else { return .reject(.sessionExpired) }
        if request.sequence == entry.sequence { return .duplicate(entry.reply) }
        if request.sequence < entry.sequence {
            return .reject(.staleSequence(sequence: request.sequence, latest: entry.sequence))
        }
        return .execute
    }

    /// Opens a new session, evicting the least recently active one when the table is full.
    public mutating func open() -> ClientID {
        let client = ClientID(nextSession)
        nextSession += 1
        clock += 1
        if entries.count >= sessionsMax {
            // Every record gets its own clock value, so there are no ties: deterministic.
            let victim = entries.min { $0.value.lastActive < $1.value.lastActive }!.key
            entries[victim] = nil
        }
        entries[client] = Entry(sequence: 0, reply: .session(client), lastActive: clock)
        return client
    }

    /// Stores `reply` as the latest of `request`'s (open) session.
    public mutating func record(_ request: Request, reply: Reply) {
        clock += 1
        // One lookup, not a check and then a store: every replica records every command.
        let previous = entries.updateValue(Entry(sequence: request.sequence, reply: reply, lastActive: clock), forKey: request.client)
        precondition(previous != nil, "recording \(request) for a session that is not open")
    }

    public func encode(into writer: inout ByteWriter) {
        writer.write(clock)
        writer.write(nextSession)
        writer.write(UInt32(entries.count))
        for client in entries.keys.sorted() {
            let entry = entries[client]!
            writer.write(client.rawValue)
            writer.write(entry.sequence)
            writer.write(entry.lastActive)
            entry.reply.encode(into: &writer)
        }
    }

    public static func decode(from reader: inout ByteReader, sessionsMax: Int, limits: CodecLimits) throws(DecodeError) -> SessionTable {
        var table = SessionTable(sessionsMax: sessionsMax)
        table.clock = try reader.readUInt64()
        table.nextSession = try reader.readUInt64()
        let countAt = reader.offset
        let count = try reader.readCount(max: limits.snapshotItemsMax, minElementBytes: 25)
        guard count <= sessionsMax else {
            throw .lengthTooLarge(offset: countAt, length: count, limit: sessionsMax)
        }
        for _ in 0..<count {
            let at = reader.offset
            let client = ClientID(try reader.readUInt64())
            let sequence = try reader.readUInt64()
            let lastActive = try reader.readUInt64()
            let reply = try Reply.decode(from: &reader, limits: limits)
            guard client.rawValue < table.nextSession else {
                throw .invalidValue(offset: at, reason: "session \(client) was never opened (next is \(table.nextSession))")
            }
            guard table.entries.updateValue(Entry(sequence: sequence, reply: reply, lastActive: lastActive), forKey: client) == nil else {
                throw .invalidValue(offset: at, reason: "session \(client) appears twice")
            }
        }
        return table
    }

}
