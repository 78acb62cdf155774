import Foundation
import Linearizability
import Primitives
import Services

/// `history.jsonl`: one JSON object per operation, readable by `csmr check`.
///
///     {"client":3,"op":"kv.put","key":"k1","value":"…","invoke_ns":1200,"complete_ns":3400,"result":{"stored":true}}
///
/// Arguments by operation: `key` (kv.get), `key`+`value` (kv.put), `name` (lock.acquire,
/// lock.release), `entry` (log.append), `first`+`last` (log.retrieve), `index` (log.truncate).
/// `complete_ns` and `result` are absent when no reply came. Results: `{"value":"…"|null}`,
/// `{"stored":true}`, `{"flag":true|false}`, `{"index":n}`, `{"first":n,"entries":[…]}`,
/// `{"error":"…"}` (the request was refused and not executed).
public enum HistoryFile {
    struct Line: Codable {
        var client: UInt64
        var op: String
        var key: String?
        var value: String?
        var name: String?
        var entry: String?
        var first: UInt64?
        var last: UInt64?
        var index: UInt64?
        var invoke_ns: UInt64
        var complete_ns: UInt64?
        var result: Result?
    }

    struct Result: Codable {
        var value: String??
        var stored: Bool?
        var flag: Bool?
        var index: UInt64?
        var first: UInt64?
        var entries: [String]?
        var error: String?

        enum CodingKeys: String, CodingKey { case value, stored, flag, index, first, entries, error }

        init(value: String?? = nil, stored: Bool? = nil, flag: Bool? = nil, index: UInt64? = nil, first: UInt64? = nil, entries: [String]? = nil, error: String? = nil) {
            self.value = value
            self.stored = stored
            self.flag = flag
            self.index = index
            self.first = first
            self.entries = entries
            self.error = error
        }

        init(from decoder: Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            if container.contains(.value) { value = .some(try container.decodeIfPresent(String.self, forKey: .value)) }
            stored = try container.decodeIfPresent(Bool.self, forKey: .stored)
            flag = try container.decodeIfPresent(Bool.self, forKey: .flag)
            index = try container.decodeIfPresent(UInt64.self, forKey: .index)
            first = try container.decodeIfPresent(UInt64.self, forKey: .first)
            entries = try container.decodeIfPresent([String].self, forKey: .entries)
            error = try container.decodeIfPresent(String.self, forKey: .error)
        }

        func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            if let value {
                if let string = value { try container.encode(string, forKey: .value) } else { try container.encodeNil(forKey: .value) }
            }
            try container.encodeIfPresent(stored, forKey: .stored)
            try container.encodeIfPresent(flag, forKey: .flag)
            try container.encodeIfPresent(index, forKey: .index)
            try container.encodeIfPresent(first, forKey: .first)
            try container.encodeIfPresent(entries, forKey: .entries)
            try container.encodeIfPresent(error, forKey: .error)
        }
    }

    public static func encode(_ history: [HistoryOperation]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var text = ""
        for operation in history {
            var line = Line(client: operation.client.rawValue, op: operation.command.operationName, invoke_ns: operation.invokeNanoseconds)
            switch operation.command {
            case let .kvGet(key): line.key = key
            case let .kvPut(key, value): line.key = key; line.value = value
            case let .lockAcquire(name), let .lockRelease(name): line.name = name
            case let .logAppend(entry): line.entry = entry
            case let .logRetrieve(first, last): line.first = first; line.last = last
            case let .logTruncate(index): line.index = index
            case .openSession, .logAppendFrom: continue
            }
            if let completion = operation.completion {
                line.complete_ns = completion.nanoseconds
                line.result = result(of: completion.reply)
            }
            text += String(decoding: try! encoder.encode(line), as: UTF8.self) + "\n"
        }
        return text
    }

    static func result(of reply: Reply) -> Result {
        switch reply {
        case let .value(value): Result(value: .some(value))
        case .stored: Result(stored: true)
        case let .flag(flag): Result(flag: flag)
        case let .index(index): Result(index: index)
        case let .entries(first, entries): Result(first: first, entries: entries)
        case let .failure(error): Result(error: errorName(error))
        case let .session(client): Result(index: client.rawValue)
        case let .extensionStep(appendedAt, applied): Result(index: appendedAt ?? applied)
        }
    }

    static func errorName(_ error: ServiceError) -> String {
        switch error {
        case let .outOfRange(first, last, available): "outOfRange \(first) \(last) \(available.lowerBound) \(available.upperBound)"
        case let .emptyRange(first, last): "emptyRange \(first) \(last)"
        case let .rangeTooLong(requested, limit): "rangeTooLong \(requested) \(limit)"
        case .sessionExpired: "sessionExpired"
        case let .staleSequence(sequence, latest): "staleSequence \(sequence) \(latest)"
        case .notPermitted: "notPermitted"
        case .outcomeUnknown: "outcomeUnknown"
        }
    }

    static func parseError(_ text: String) -> ServiceError? {
        let parts = text.split(separator: " ").map(String.init)
        let numbers = parts.dropFirst().compactMap { UInt64($0) }
        switch (parts.first, numbers.count) {
        case ("outOfRange", 4) where numbers[2] <= numbers[3]:
            return .outOfRange(first: numbers[0], last: numbers[1], available: numbers[2]..<numbers[3])
        case ("emptyRange", 2): return .emptyRange(first: numbers[0], last: numbers[1])
        case ("rangeTooLong", 2): return .rangeTooLong(requested: numbers[0], limit: numbers[1])
        case ("sessionExpired", 0): return .sessionExpired
        case ("staleSequence", 2): return .staleSequence(sequence: numbers[0], latest: numbers[1])
        case ("notPermitted", 0): return .notPermitted
        case ("outcomeUnknown", 0): return .outcomeUnknown
        default: return nil
        }
    }

    public struct ParseError: Error, CustomStringConvertible {
        public var file: String
        public var line: Int
        public var problem: String
        public var description: String { "\(file):\(line): \(problem)" }
    }

    /// Reads a history file; a malformed line is an error naming the file and line.
    public static func decode(_ text: String, file: String) throws(ParseError) -> [HistoryOperation] {
        let decoder = JSONDecoder()
        var history: [HistoryOperation] = []
        for (offset, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let lineNumber = offset + 1
            guard !raw.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            let line: Line
            do {
                line = try decoder.decode(Line.self, from: Data(raw.utf8))
            } catch {
                throw ParseError(file: file, line: lineNumber, problem: "not a history line: \(error)")
            }
            func need<T>(_ value: T?, _ field: String) throws(ParseError) -> T {
                guard let value else { throw ParseError(file: file, line: lineNumber, problem: "\(line.op) needs field \"\(field)\"") }
                return value
            }
            let command: Command
            switch line.op {
            case "kv.get": command = .kvGet(key: try need(line.key, "key"))
            case "kv.put": command = .kvPut(key: try need(line.key, "key"), value: try need(line.value, "value"))
            case "lock.acquire": command = .lockAcquire(name: try need(line.name, "name"))
            case "lock.release": command = .lockRelease(name: try need(line.name, "name"))
            case "log.append": command = .logAppend(entry: try need(line.entry, "entry"))
            case "log.retrieve": command = .logRetrieve(first: try need(line.first, "first"), last: try need(line.last, "last"))
            case "log.truncate": command = .logTruncate(index: try need(line.index, "index"))
            default: throw ParseError(file: file, line: lineNumber, problem: "unknown op \"\(line.op)\"")
            }
            var completion: HistoryOperation.Completion?
            if let complete = line.complete_ns {
                let result = try need(line.result, "result")
                let reply: Reply
                if let value = result.value { reply = .value(value)
                } else if result.stored == true { reply = .stored
                } else if let flag = result.flag { reply = .flag(flag)
                } else if let entries = result.entries { reply = .entries(first: try need(result.first, "result.first"), entries)
                } else if let index = result.index { reply = .index(index)
                } else if let error = result.error {
                    guard let parsed = parseError(error) else { throw ParseError(file: file, line: lineNumber, problem: "unknown error \"\(error)\"") }
                    reply = .failure(parsed)
                } else {
                    throw ParseError(file: file, line: lineNumber, problem: "result has none of value, stored, flag, index, entries, error")
                }
                guard complete >= line.invoke_ns else {
                    throw ParseError(file: file, line: lineNumber, problem: "complete_ns \(complete) is before invoke_ns \(line.invoke_ns)")
                }
                completion = HistoryOperation.Completion(nanoseconds: complete, reply: reply)
            }
            history.append(HistoryOperation(client: ClientID(line.client), command: command, invokeNanoseconds: line.invoke_ns, completion: completion))
        }
        return history
    }
}
