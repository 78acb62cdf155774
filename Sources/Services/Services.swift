import Primitives

/// Bounds on service state and requests. Defaults suit the harness; all are checked at start-up.
public struct ServiceLimits: Hashable, Sendable {
    /// Entries one `log.retrieve` may return. Bounds reply size. Recommended 1024; at least 1.
    public var retrieveEntriesMax: UInt64 = 1024
    /// Client sessions the session table keeps; the least recently active is evicted beyond it.
    /// Recommended ≥ 4 × the number of clients; at least 1.
    public var sessionsMax: Int = 65_536

    public init(retrieveEntriesMax: UInt64 = 1024, sessionsMax: Int = 65_536) {
        precondition(retrieveEntriesMax >= 1, "retrieveEntriesMax must be at least 1, got \(retrieveEntriesMax)")
        precondition(sessionsMax >= 1, "sessionsMax must be at least 1, got \(sessionsMax)")
        self.retrieveEntriesMax = retrieveEntriesMax
        self.sessionsMax = sessionsMax
    }
}

/// State with a canonical encoding: equal state, equal bytes, so the digest is the bytes' digest.
public protocol CanonicallyEncoded {
    func encode(into writer: inout ByteWriter)
}

extension CanonicallyEncoded {
    public var digest: Digest {
        var writer = ByteWriter()
        encode(into: &writer)
        return Digest(of: writer.bytes)
    }
}

/// Key-value store: `get(key) -> value?`, `put(key, value)`.
///
/// The table is sharded (`ShardedTable`): a checkpoint's copy shares it, and a write after the
/// copy copies one shard, not the whole table.
public struct KeyValueStore: Hashable, Sendable, CanonicallyEncoded {
    public private(set) var entries: ShardedTable<String, String> = [:]

    public init() {}

    public init(entries: ShardedTable<String, String>) { self.entries = entries }

    public init(entries: [String: String]) { self.entries = ShardedTable(entries) }

    /// See `ShardedTable.unshare`.
    public mutating func unshare() { entries.unshare() }

    /// Runs a kv command; nil for any other service's command.
    public mutating func execute(_ command: Command) -> Reply? {
        switch command {
        case let .kvGet(key): return .value(get(key))
        case let .kvPut(key, value):
            put(key, value)
            return .stored
        default: return nil
        }
    }

    public func get(_ key: String) -> String? { entries[key] }

    public mutating func put(_ key: String, _ value: String) { entries[key] = value }

    /// Canonical encoding: sorted by key, so equal stores give equal bytes. `canonical: false`
    /// writes the same entries in the table's own order (no sort: a checkpoint of a large store
    /// would otherwise spend most of its time sorting); `decode` reads either.
    public func encode(into writer: inout ByteWriter) { encode(into: &writer, canonical: true) }

    public func encode(into writer: inout ByteWriter, canonical: Bool) {
        writer.write(UInt32(entries.count))
        if canonical {
            for key in entries.keys.sorted() {
                writer.write(key)
                writer.write(entries[key]!)
            }
        } else {
            for (key, value) in entries {
                writer.write(key)
                writer.write(value)
            }
        }
    }

    public static func decode(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> KeyValueStore {
        var store = KeyValueStore()
        let count = try reader.readCount(max: limits.snapshotItemsMax, minElementBytes: 8)
        for _ in 0..<count {
            let at = reader.offset
            let key = try reader.readString(maxBytes: limits.stringBytesMax)
            let value = try reader.readString(maxBytes: limits.stringBytesMax)
            guard store.entries.updateValue(value, forKey: key) == nil else {
                throw .invalidValue(offset: at, reason: "kv key \"\(key)\" appears twice")
            }
        }
        return store
    }

}

/// Lock table: a lock is free or held by one client session. Sharded, as `KeyValueStore`.
public struct LockTable: Hashable, Sendable, CanonicallyEncoded {
    public private(set) var holders: ShardedTable<String, ClientID> = [:]

    public init() {}

    public init(holders: ShardedTable<String, ClientID>) { self.holders = holders }

    /// See `ShardedTable.unshare`.
    public mutating func unshare() { holders.unshare() }

    public init(holders: [String: ClientID]) { self.holders = ShardedTable(holders) }

    /// Runs a lock command for `client`; nil for any other service's command.
    public mutating func execute(_ command: Command, client: ClientID) -> Reply? {
        switch command {
        case let .lockAcquire(name): return .flag(acquire(name, by: client))
        case let .lockRelease(name): return .flag(release(name, by: client))
        default: return nil
        }
    }

    /// True if `client` now holds `name`: granted when free, and idempotently for its holder.
    public mutating func acquire(_ name: String, by client: ClientID) -> Bool {
        switch holders[name] {
        case nil:
            holders[name] = client
            return true
        case let holder?:
            return holder == client
        }
    }

    /// True if `client` held `name` and has now released it; false for anyone else.
    public mutating func release(_ name: String, by client: ClientID) -> Bool {
        guard holders[name] == client else { return false }
        holders[name] = nil
        return true
    }

    public func holder(of name: String) -> ClientID? { holders[name] }

    /// Sorted by name when `canonical` (see `KeyValueStore.encode`).
    public func encode(into writer: inout ByteWriter) { encode(into: &writer, canonical: true) }

    public func encode(into writer: inout ByteWriter, canonical: Bool) {
        writer.write(UInt32(holders.count))
        let names = canonical ? holders.keys.sorted() : Array(holders.keys)
        for name in names {
            writer.write(name)
            writer.write(holders[name]!.rawValue)
        }
    }

    public static func decode(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> LockTable {
        var table = LockTable()
        let count = try reader.readCount(max: limits.snapshotItemsMax, minElementBytes: 12)
        for _ in 0..<count {
            let at = reader.offset
            let name = try reader.readString(maxBytes: limits.stringBytesMax)
            let holder = ClientID(try reader.readUInt64())
            guard table.holders.updateValue(holder, forKey: name) == nil else {
                throw .invalidValue(offset: at, reason: "lock \"\(name)\" appears twice")
            }
        }
        return table
    }

}

/// An append-only log with absolute indices from 0 and prefix truncation.
public struct ReplicatedLog: Hashable, Sendable, CanonicallyEncoded {
    /// Index of the first retained entry.
    public private(set) var firstIndex: UInt64 = 0
    /// Retained entries, in chunks of `chunkEntries`, from `head` in the first chunk; every chunk
    /// but the last is full. A checkpoint's copy shares the chunks, so the next append copies
    /// one chunk (and the list of chunks), not the whole log as one array did. Truncating moves
    /// `head` and drops whole chunks: O(1) amortized.
    private var chunks: [[String]] = []
    private var head = 0
    /// Per origin group, how many of its extension steps the log holds.
    public private(set) var originApplied: [UInt32: UInt64] = [:]

    static let chunkEntries = 1_024

    public init() {}

    /// Runs a log command; nil for any other service's command.
    public mutating func execute(_ command: Command, retrieveLimit: UInt64) -> Reply? {
        switch command {
        case let .logAppend(entry): return .index(append(entry))
        case let .logRetrieve(first, last):
            switch retrieve(first: first, last: last, limit: retrieveLimit) {
            case let .success(entries): return .entries(first: first, entries)
            case let .failure(error): return .failure(error)
            }
        case let .logTruncate(index): return .flag(truncate(below: index))
        case let .logAppendFrom(origin, index, entry):
            let applied = originApplied[origin, default: 0]
            guard index == applied + 1 else { return .extensionStep(appendedAt: nil, applied: applied) }
            originApplied[origin] = index
            return .extensionStep(appendedAt: append(entry), applied: index)
        default: return nil
        }
    }

    /// Entries retained.
    public var count: Int { chunks.isEmpty ? 0 : (chunks.count - 1) * Self.chunkEntries + chunks[chunks.count - 1].count - head }

    /// One past the last entry's index: the index the next append gets.
    public var endIndex: UInt64 { firstIndex + UInt64(count) }

    public var retained: Range<UInt64> { firstIndex..<endIndex }

    public mutating func append(_ entry: String) -> UInt64 {
        if chunks.isEmpty || chunks[chunks.count - 1].count == Self.chunkEntries {
            var chunk: [String] = []
            chunk.reserveCapacity(Self.chunkEntries)
            chunks.append(chunk)
        }
        chunks[chunks.count - 1].append(entry)
        return endIndex - 1
    }

    /// The entry at absolute `index`, or nil outside `retained`.
    public func entry(at index: UInt64) -> String? {
        guard index >= firstIndex, index < endIndex else { return nil }
        let position = head + Int(index - firstIndex)
        return chunks[position / Self.chunkEntries][position % Self.chunkEntries]
    }

    public func retrieve(first: UInt64, last: UInt64, limit: UInt64) -> Result<[String], ServiceError> {
        guard first <= last else { return .failure(.emptyRange(first: first, last: last)) }
        let requested = last - first &+ 1
        guard requested != 0, requested <= limit else {
            return .failure(.rangeTooLong(requested: requested == 0 ? UInt64.max : requested, limit: limit))
        }
        guard first >= firstIndex, last < endIndex else {
            return .failure(.outOfRange(first: first, last: last, available: retained))
        }
        var result: [String] = []
        result.reserveCapacity(Int(requested))
        var position = head + Int(first - firstIndex)
        let end = position + Int(requested)
        while position < end {
            let chunk = chunks[position / Self.chunkEntries]
            let offset = position % Self.chunkEntries
            let take = min(end - position, chunk.count - offset)
            result.append(contentsOf: chunk[offset..<(offset + take)])
            position += take
        }
        return .success(result)
    }

    /// Drops every entry below `index`. False (and nothing changes) when `index` is past the end.
    public mutating func truncate(below index: UInt64) -> Bool {
        guard index <= endIndex else { return false }
        guard index > firstIndex else { return true }
        head += Int(index - firstIndex)
        firstIndex = index
        let emptied = min(head / Self.chunkEntries, chunks.count)
        if emptied > 0 {
            chunks.removeFirst(emptied)
            head -= emptied * Self.chunkEntries
        }
        if chunks.count == 1, head == chunks[0].count {
            // Everything truncated: start the next chunk afresh rather than keep a full dead one.
            chunks = []
            head = 0
        }
        return true
    }

    /// The retained entries in order.
    public var entries: some Sequence<String> {
        chunks.lazy.enumerated().flatMap { index, chunk in chunk[(index == 0 ? head : 0)...] }
    }

    public static func == (lhs: ReplicatedLog, rhs: ReplicatedLog) -> Bool {
        lhs.firstIndex == rhs.firstIndex && lhs.count == rhs.count && lhs.entries.elementsEqual(rhs.entries)
            && lhs.originApplied == rhs.originApplied
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(firstIndex)
        for entry in entries { hasher.combine(entry) }
    }

    public func encode(into writer: inout ByteWriter) {
        writer.write(firstIndex)
        writer.write(UInt32(count))
        for entry in entries { writer.write(entry) }
        writer.write(UInt32(originApplied.count))
        for origin in originApplied.keys.sorted() {
            writer.write(origin)
            writer.write(originApplied[origin]!)
        }
    }

    public static func decode(from reader: inout ByteReader, limits: CodecLimits) throws(DecodeError) -> ReplicatedLog {
        var log = ReplicatedLog()
        log.firstIndex = try reader.readUInt64()
        let count = try reader.readCount(max: limits.snapshotItemsMax, minElementBytes: 4)
        guard UInt64.max - log.firstIndex >= UInt64(count) else {
            throw .invalidValue(offset: reader.offset, reason: "log end index overflows")
        }
        for _ in 0..<count { _ = log.append(try reader.readString(maxBytes: limits.stringBytesMax)) }
        let origins = try reader.readCount(max: limits.snapshotItemsMax, minElementBytes: 12)
        for _ in 0..<origins {
            let at = reader.offset
            let origin = try reader.readUInt32()
            guard log.originApplied.updateValue(try reader.readUInt64(), forKey: origin) == nil else {
                throw .invalidValue(offset: at, reason: "origin \(origin) appears twice")
            }
        }
        return log
    }

}
