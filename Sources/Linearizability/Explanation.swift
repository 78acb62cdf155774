import Primitives
import Services

/// Human-readable accounts of violations: which operations, with their times and replies, and
/// what the object would have replied instead.
enum Explanation {
    /// How many operations of a prefix or candidate list an explanation shows; longer lists are
    /// elided in the middle of the history, where they matter least.
    static let operationsShownMax = 12

    static func impossibleReply(object: String, operation: HistoryOperation, reason: String) -> String {
        "\(object) is not linearizable: \(describe(operation)) cannot be right in any state, because \(reason)."
    }

    static func deadEnd(object: String, deadEnd: DeadEnd, operations: [HistoryOperation],
                        effects: [Effect], model: SequentialModel) -> String {
        let blocking = operations[deadEnd.blocking]
        var lines: [String] = []
        lines.append("\(object) is not linearizable (\(count(operations.count, "operation"))). The longest linearizable "
            + "prefix has \(count(deadEnd.prefix.count, "operation")), after which \(model.describe(deadEnd.state)); "
            + "then no operation invoked before \(blocking.client) \(describe(blocking.command)) completed at "
            + "\(blocking.completion?.nanoseconds ?? 0) ns can take effect next:")
        for candidate in deadEnd.candidates.prefix(operationsShownMax) {
            let operation = operations[candidate]
            let wouldReply = model.reply(to: effects[candidate], in: deadEnd.state)
            let verdict: String
            if let recorded = operation.completion?.reply, recorded != wouldReply {
                verdict = "the object would reply \(describe(wouldReply))"
            } else if operation.completion == nil {
                verdict = "pending, it could take effect here, but no order of the rest works after it"
            } else {
                verdict = "its reply fits here, but no order of the rest works after it"
            }
            lines.append("  - \(describe(operation)): \(verdict)")
        }
        if deadEnd.candidates.count > operationsShownMax {
            lines.append("  - … and \(deadEnd.candidates.count - operationsShownMax) more")
        }
        if deadEnd.prefix.isEmpty {
            lines.append("Nothing could be linearized before them.")
        } else {
            let shown = deadEnd.prefix.suffix(operationsShownMax)
            lines.append(shown.count < deadEnd.prefix.count
                ? "The prefix, last \(shown.count) of \(deadEnd.prefix.count) in linearization order:"
                : "The prefix, in linearization order:")
            // A suffix slice keeps the prefix's indices, which are the linearization positions.
            for position in shown.indices {
                lines.append("  \(position + 1). \(describe(operations[shown[position]]))")
            }
        }
        return lines.joined(separator: "\n")
    }

    /// `1 operation`, `2 operations`.
    static func count(_ number: Int, _ noun: String) -> String {
        number == 1 ? "1 \(noun)" : "\(number) \(noun)s"
    }

    /// `c1 kv.put "k" = "v" (invoked 0 ns, completed 10 ns, replied stored)`.
    static func describe(_ operation: HistoryOperation) -> String {
        let timing: String
        if let completion = operation.completion {
            timing = "invoked \(operation.invokeNanoseconds) ns, completed \(completion.nanoseconds) ns, "
                + "replied \(describe(completion.reply))"
        } else {
            timing = "invoked \(operation.invokeNanoseconds) ns, pending"
        }
        return "\(operation.client) \(describe(operation.command)) (\(timing))"
    }

    static func describe(_ command: Command) -> String {
        switch command {
        case .openSession: "session.open"
        case let .kvGet(key): "kv.get \(key.debugDescription)"
        case let .kvPut(key, value): "kv.put \(key.debugDescription) = \(value.debugDescription)"
        case let .lockAcquire(name): "lock.acquire \(name.debugDescription)"
        case let .lockRelease(name): "lock.release \(name.debugDescription)"
        case let .logAppend(entry): "log.append \(entry.debugDescription)"
        case let .logRetrieve(first, last): "log.retrieve \(first)...\(last)"
        case let .logTruncate(index): "log.truncate below \(index)"
        case let .logAppendFrom(origin, index, entry): "log.append-from g\(origin)#\(index) \(entry.debugDescription)"
        }
    }

    static func describe(_ reply: Reply) -> String {
        switch reply {
        case let .value(value): value.map { "value \($0.debugDescription)" } ?? "value nil"
        case .stored: "stored"
        case let .flag(flag): "\(flag)"
        case let .index(index): "index \(index)"
        case let .session(client): "session \(client)"
        case let .extensionStep(appendedAt, applied): "extension step appended at \(appendedAt.map(String.init) ?? "none"), \(applied) applied"
        case let .failure(error): "failure (\(error))"
        case let .entries(first, entries):
            if entries.count <= 6 {
                "entries from \(first) [\(entries.map(\.debugDescription).joined(separator: ", "))]"
            } else {
                "entries from \(first) [\(entries.prefix(3).map(\.debugDescription).joined(separator: ", ")), …, "
                    + "\(entries.suffix(2).map(\.debugDescription).joined(separator: ", "))] (\(entries.count) entries)"
            }
        }
    }
}
