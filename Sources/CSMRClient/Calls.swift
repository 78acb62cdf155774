import Services

// The typed calls of each service. Each is one `CSMRClient.execute`, with the reply unpacked:
// a refusal throws `CSMRClientError.refused`, a reply of another shape `unexpectedReply`.

extension CSMRClient {
    func call<Result>(_ command: Command, timeout: Duration?, _ unpack: (Reply) -> Result?) async throws -> Result {
        let reply = try await execute(command, timeout: timeout)
        if case let .failure(error) = reply { throw CSMRClientError.refused(error) }
        guard let result = unpack(reply) else { throw CSMRClientError.unexpectedReply(reply) }
        return result
    }
}

public struct KeyValueCalls: Sendable {
    let client: CSMRClient

    /// The value of `key`, nil if it has none.
    public func get(_ key: String, timeout: Duration? = nil) async throws -> String? {
        try await client.call(.kvGet(key: key), timeout: timeout) { if case let .value(value) = $0 { .some(value) } else { nil } }
    }

    public func put(_ key: String, _ value: String, timeout: Duration? = nil) async throws {
        try await client.call(.kvPut(key: key, value: value), timeout: timeout) { $0 == .stored ? () : nil }
    }
}

public struct LockCalls: Sendable {
    let client: CSMRClient

    /// Whether this client holds `name` now (true also when it already held it).
    public func acquire(_ name: String, timeout: Duration? = nil) async throws -> Bool {
        try await client.call(.lockAcquire(name: name), timeout: timeout, Self.flag)
    }

    /// Whether this client held `name` and has released it.
    public func release(_ name: String, timeout: Duration? = nil) async throws -> Bool {
        try await client.call(.lockRelease(name: name), timeout: timeout, Self.flag)
    }

    static func flag(_ reply: Reply) -> Bool? { if case let .flag(flag) = reply { flag } else { nil } }
}

public struct LogCalls: Sendable {
    let client: CSMRClient

    /// Appends `entry`; returns its index (indices start at 0 and are never reused).
    public func append(_ entry: String, timeout: Duration? = nil) async throws -> UInt64 {
        try await client.call(.logAppend(entry: entry), timeout: timeout) { if case let .index(index) = $0 { index } else { nil } }
    }

    /// The entries at `indices`, all of which must still be retained.
    public func retrieve(_ indices: ClosedRange<UInt64>, timeout: Duration? = nil) async throws -> [String] {
        try await client.call(.logRetrieve(first: indices.lowerBound, last: indices.upperBound), timeout: timeout) {
            if case let .entries(_, entries) = $0 { entries } else { nil }
        }
    }

    /// Drops every entry below `index`; false if nothing was dropped.
    public func truncate(below index: UInt64, timeout: Duration? = nil) async throws -> Bool {
        try await client.call(.logTruncate(index: index), timeout: timeout, LockCalls.flag)
    }
}
