/// A hash table kept as `shardCount` standard dictionaries, chosen by the key's hash: a copy (a
/// checkpoint's snapshot of the state) shares every shard, and the first write to a shard after
/// the copy copies that shard alone, about 1/256 of the table. The thread that encodes a
/// checkpoint's copy gives it storage of its own at once (`unshare`), so the live table's next
/// writes seldom find a shard still shared and copy it on the executing thread.
///
/// Why not one `Dictionary`: the first put after every checkpoint copied the whole table on the
/// thread that executes (about 15 ms for 100,000 keys, the once-a-second p99 spike of open-loop
/// runs). Why not a hash trie (`TreeDictionary`): it removed the spike, but a put walked three or
/// four nodes of it, each a likely cache miss, and execution three times per command (once per
/// replica) made it a tenth of a saturated run's CPU. Here a put costs one extra hash and one
/// array index over a `Dictionary`.
///
/// The shard of a key depends on the process's hash seed, so the order of iteration does too:
/// canonical encodings sort (as they did for `Dictionary`). Equality compares shard by shard,
/// which is sound within one process, the only place two tables meet.
public struct ShardedTable<Key: Hashable & Sendable, Value: Sendable>: Sendable {
    public static var shardCount: Int { 256 }

    private var shards: [[Key: Value]]
    public private(set) var count = 0

    public init() {
        shards = Array(repeating: [:], count: Self.shardCount)
    }

    public init(_ dictionary: [Key: Value]) {
        self.init()
        for (key, value) in dictionary { self[key] = value }
    }

    private static func shard(of key: Key) -> Int { Int(UInt(bitPattern: key.hashValue) % UInt(shardCount)) }

    public subscript(key: Key) -> Value? {
        get { shards[Self.shard(of: key)][key] }
        set {
            if let newValue {
                updateValue(newValue, forKey: key)
            } else {
                removeValue(forKey: key)
            }
        }
    }

    /// The previous value, as `Dictionary.updateValue`.
    @discardableResult
    public mutating func updateValue(_ value: Value, forKey key: Key) -> Value? {
        let old = shards[Self.shard(of: key)].updateValue(value, forKey: key)
        if old == nil { count += 1 }
        return old
    }

    @discardableResult
    public mutating func removeValue(forKey key: Key) -> Value? {
        let old = shards[Self.shard(of: key)].removeValue(forKey: key)
        if old != nil { count -= 1 }
        return old
    }

    public var isEmpty: Bool { count == 0 }

    /// Gives this table storage of its own for every shard it still shares with a copy, so the
    /// other copy's next write to that shard finds it unshared. Why: a checkpoint's copy shares
    /// every shard with the live table, and the executing thread used to copy each one on its
    /// first write after the claim, in a burst (one shard per write, nearly every shard within
    /// tens of milliseconds at 100,000 keys: p99 of an open-loop run ×10). The thread that
    /// encodes the checkpoint copies them instead, right away, at low priority; whichever thread
    /// copies a shard first, the other then owns its storage alone.
    public mutating func unshare() {
        for index in shards.indices where !shards[index].isEmpty {
            // On storage that another table also holds, reserving the capacity it already has
            // copies it (the standard library's copy-on-write); on storage this table alone
            // holds, it does nothing.
            shards[index].reserveCapacity(shards[index].count)
        }
    }

    /// Every key, in no particular order.
    public var keys: [Key] {
        var keys: [Key] = []
        keys.reserveCapacity(count)
        for shard in shards where !shard.isEmpty { keys.append(contentsOf: shard.keys) }
        return keys
    }

    /// Adds `other`'s entries; for a key in both, `combine` picks the value.
    public mutating func merge(_ other: ShardedTable<Key, Value>, uniquingKeysWith combine: (Value, Value) -> Value) {
        for (key, value) in other {
            if let existing = self[key] {
                self[key] = combine(existing, value)
            } else {
                self[key] = value
            }
        }
    }
}

extension ShardedTable: Sequence {
    public struct Iterator: IteratorProtocol {
        private let shards: [[Key: Value]]
        private var shard = 0
        private var inner: Dictionary<Key, Value>.Iterator?

        init(_ shards: [[Key: Value]]) {
            self.shards = shards
            inner = shards.first?.makeIterator()
        }

        public mutating func next() -> (key: Key, value: Value)? {
            while true {
                if let element = inner?.next() { return element }
                // Most shards of a small table are empty: step over them without an iterator each.
                shard += 1
                while shard < shards.count, shards[shard].isEmpty { shard += 1 }
                guard shard < shards.count else { return nil }
                inner = shards[shard].makeIterator()
            }
        }
    }

    public func makeIterator() -> Iterator { Iterator(shards) }

    public var underestimatedCount: Int { count }
}

extension ShardedTable: ExpressibleByDictionaryLiteral {
    public init(dictionaryLiteral elements: (Key, Value)...) {
        self.init()
        for (key, value) in elements { self[key] = value }
    }
}

extension ShardedTable: Equatable where Value: Equatable {
    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.count == rhs.count && lhs.shards == rhs.shards }
}

extension ShardedTable: Hashable where Value: Hashable {
    public func hash(into hasher: inout Hasher) {
        hasher.combine(count)
        hasher.combine(shards)
    }
}
