import Primitives
import Services

// Compact one-line text for consensus messages, for scenario traces and logs.
//
// The text is deterministic: it never depends on Dictionary or Set order, addresses or time, so
// a trace written today compares equal to one written tomorrow. It is meant for people reading a
// trace, not for parsing. Runs of skipped slots are written `slots 2...8`: every slot of that
// sublog from 2 through 8 (a run holds one sublog's slots only).

extension Command {
    /// The operation name and its arguments: `kv.put k=v`, `log.retrieve 0...3`.
    public var compactDescription: String {
        switch self {
        case .openSession: operationName
        case let .kvGet(key): "\(operationName) \(Self.word(key))"
        case let .kvPut(key, value): "\(operationName) \(Self.word(key))=\(Self.word(value))"
        case let .lockAcquire(name), let .lockRelease(name): "\(operationName) \(Self.word(name))"
        case let .logAppend(entry): "\(operationName) \(Self.word(entry))"
        case let .logRetrieve(first, last): "\(operationName) \(first)...\(last)"
        case let .logTruncate(index): "\(operationName) \(index)"
        case let .logAppendFrom(origin, index, entry): "\(operationName) g\(origin)#\(index) \(Self.word(entry))"
        }
    }

    /// A string as it is when it reads unambiguously in a trace, else quoted with escapes.
    static func word(_ text: String) -> String {
        let plain = !text.isEmpty && text.unicodeScalars.allSatisfy { scalar in
            scalar.isASCII && scalar.value > 0x20 && scalar.value < 0x7f && !"\"=,()[]".unicodeScalars.contains(scalar)
        }
        return plain ? text : text.debugDescription
    }
}

extension Request {
    /// `c1#2 kv.put k=v`.
    public var compactDescription: String { "\(client)#\(sequence) \(command.compactDescription)" }
}

extension SlotValue {
    /// `noop` or `batch(c1#1 kv.put k=v, c2#1 kv.get k)`.
    public var compactDescription: String {
        switch self {
        case .noop: "noop"
        case let .batch(requests): "batch(\(requests.map(\.compactDescription).joined(separator: ", ")))"
        }
    }
}

extension SlotRun {
    /// `3=batch(...)` or `2...8=noop`.
    public var compactDescription: String {
        first == last ? "\(first)=\(value.compactDescription)" : "\(first)...\(last)=\(value.compactDescription)"
    }

    /// `slot 3 batch(...)` or `slots 2...8 noop`, as an accept names it.
    var slotsDescription: String {
        first == last ? "slot \(first) \(value.compactDescription)" : "slots \(first)...\(last) \(value.compactDescription)"
    }
}

extension ReportedSlot {
    /// `4@0.1=noop` for a slot accepted at ballot 0.1, `4@decided=noop` for a decided one.
    public var compactDescription: String {
        "\(slot)@\(ballot.map(\.description) ?? "decided")=\(value.compactDescription)"
    }
}

extension PaxosMessage: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .prepare(sublog, ballot, fromSlot):
            "prepare sublog \(sublog) ballot \(ballot) from \(fromSlot)"
        case let .promise(sublog, ballot, fromSlot, slots, complete):
            "promise sublog \(sublog) ballot \(ballot) from \(fromSlot) [\(slots.map(\.compactDescription).joined(separator: ", "))] "
                + (complete ? "complete" : "cut")
        case let .accept(ballot, run):
            "accept \(ballot) \(run.slotsDescription)"
        case let .accepted(ballot, first, skipped):
            skipped.isEmpty ? "accepted \(ballot) first \(first)"
                : "accepted \(ballot) first \(first) skipped [\(skipped.map(\.compactDescription).joined(separator: ", "))]"
        case let .rejected(sublog, promised):
            "rejected sublog \(sublog) promised \(promised)"
        case let .decided(runs):
            "decided [\(runs.map(\.compactDescription).joined(separator: ", "))]"
        case let .heartbeat(deliveredBelow, horizon, batchHorizon, _):
            "heartbeat delivered<\(deliveredBelow) horizon \(horizon) batches<\(batchHorizon)"
        case let .undecided(slots):
            "undecided [\(slots.map(\.compactDescription).joined(separator: ", "))]"
        case .heartbeatEcho:
            "heartbeat echo"
        case let .catchUp(fromSlot):
            "catch-up from \(fromSlot)"
        case let .forward(request):
            "forward \(request.compactDescription)"
        case let .compacted(below):
            "compacted below \(below)"
        case let .checkpointRequest(slot, chunk):
            "checkpoint-request slot \(slot) chunk \(chunk)"
        case let .checkpointChunk(chunk):
            "checkpoint-chunk slot \(chunk.slot) \(chunk.index + 1)/\(chunk.count) \(chunk.bytes.count) bytes"
        }
    }
}

extension Outgoing: CustomStringConvertible {
    /// `to r1: accept 0.0 slot 3 noop`.
    public var description: String { "to \(to): \(message)" }
}
