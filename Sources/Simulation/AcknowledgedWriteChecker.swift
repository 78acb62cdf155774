import Composition
import Linearizability
import Services

/// No write a client saw acknowledged may be missing from any replica's final state, whatever
/// crashed and recovered on the way. Client values are unique (client and operation number), so a
/// lost write, or a replica that came back with an older value, shows.
///
/// For every acknowledged `kv.put` of value v on key k, each replica of k's group must hold v at
/// k, or a value w written by a put that may come after it in a linearization (one that did not
/// complete before the acknowledged put was invoked). For every acknowledged `log.append` at index
/// i, each replica of the log's group must hold the entry at i, unless i was truncated (a truncate
/// above i was issued). This reads the final states only, after every replica restarted and
/// caught up; the linearizability checker covers the replies themselves.
enum AcknowledgedWriteChecker {
    static let violationsMax = 5

    /// - Parameter machines: per group, per replica, its final state (nil: down).
    static func check(history: [HistoryOperation], router: Router, machines: [[StateMachine?]]) -> [String] {
        var writers: [String: HistoryOperation] = [:]
        var truncations: [(group: Int, index: UInt64)] = []
        for operation in history {
            if case .failure? = operation.completion?.reply { continue }
            switch operation.command {
            case let .kvPut(key, value): writers[key + "\u{0}" + value] = operation
            case let .logTruncate(index): truncations.append((router.group(for: operation.command), index))
            default: break
            }
        }
        var violations: [String] = []
        func report(_ text: String) { if violations.count < violationsMax { violations.append(text) } }
        for operation in history {
            guard let completion = operation.completion else { continue }
            let group = router.group(for: operation.command)
            switch (operation.command, completion.reply) {
            case let (.kvPut(key, value), .stored):
                for (replica, machine) in machines[group].enumerated() {
                    guard let machine else { continue }
                    let held = machine.kv.entries[key]
                    guard held != value else { continue }
                    let acknowledged = "put \(key)=\(value) acknowledged at \(completion.nanoseconds / 1_000) us"
                    guard let held else {
                        report("acknowledged write lost: r\(replica) of group \(group) has no value at \(key) after the \(acknowledged)")
                        continue
                    }
                    guard let writer = writers[key + "\u{0}" + held] else {
                        report("acknowledged write lost: r\(replica) of group \(group) holds \(key)=\(held), which no client wrote, after the \(acknowledged)")
                        continue
                    }
                    if let written = writer.completion, written.nanoseconds < operation.invokeNanoseconds {
                        report("acknowledged write lost: r\(replica) of group \(group) holds \(key)=\(held), acknowledged at \(written.nanoseconds / 1_000) us, before the \(acknowledged) (invoked at \(operation.invokeNanoseconds / 1_000) us)")
                    }
                }
            case let (.logAppend(entry), .index(index)):
                for (replica, machine) in machines[group].enumerated() {
                    guard let machine else { continue }
                    let log = machine.log
                    let acknowledged = "append of \(entry) acknowledged at index \(index) at \(completion.nanoseconds / 1_000) us"
                    if index < log.firstIndex {
                        if !truncations.contains(where: { $0.group == group && $0.index > index }) {
                            report("acknowledged write lost: r\(replica) of group \(group) starts its log at \(log.firstIndex), no truncate went beyond the \(acknowledged)")
                        }
                    } else if index >= log.endIndex {
                        report("acknowledged write lost: r\(replica) of group \(group) ends its log at \(log.endIndex), before the \(acknowledged)")
                    } else {
                        let held = log.entry(at: index)!
                        if held != entry { report("acknowledged write lost: r\(replica) of group \(group) holds \(held) at \(index), not the \(acknowledged)") }
                    }
                }
            default: break
            }
        }
        return violations
    }
}
