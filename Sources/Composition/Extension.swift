import Linearizability
import Primitives
import Services

/// One extension step: the `index`-th put (1-based, in the origin group's execution order) of
/// group `origin`, as the log entry it becomes. The format is the contract between the origin's
/// replicas (which make the entry), the log (which stores it) and checkers outside the replicas
/// (which find a group's steps in the log by `prefix(origin:)` and read them back with `parse`):
///
///     g<origin>#<index> put <key>=<value>
///
/// `parse` splits key and value at the first `=` after "put ", so a value may contain `=` and a
/// key may not (the harness's keys, `k123` and `shared`, never do).
public struct ExtensionStep: Hashable, Sendable {
    public var origin: UInt32
    public var index: UInt64
    public var key: String
    public var value: String

    public init(origin: UInt32, index: UInt64, key: String, value: String) {
        self.origin = origin
        self.index = index
        self.key = key
        self.value = value
    }

    /// The log entry.
    public var entry: String { "\(Self.prefix(origin: origin))\(index) put \(key)=\(value)" }

    /// What every entry of `origin`'s steps starts with.
    public static func prefix(origin: UInt32) -> String { "g\(origin)#" }

    /// The step an entry stands for, nil for an entry that is not a step (a client's append).
    public static func parse(_ entry: String) -> ExtensionStep? {
        guard entry.hasPrefix("g"), let hash = entry.firstIndex(of: "#"),
              let origin = UInt32(entry[entry.index(after: entry.startIndex)..<hash]) else { return nil }
        let rest = entry[entry.index(after: hash)...]
        guard let space = rest.firstIndex(of: " "), let index = UInt64(rest[..<space]) else { return nil }
        let body = rest[rest.index(after: space)...]
        guard body.hasPrefix("put "), let equals = body.firstIndex(of: "=") else { return nil }
        let key = body[body.index(body.startIndex, offsetBy: 4)..<equals]
        return ExtensionStep(origin: origin, index: index, key: String(key), value: String(body[body.index(after: equals)...]))
    }
}

/// Sends a group's extension steps to the log's group, in order, until they are all applied.
///
/// Every replica of the origin group produces the same steps in the same order (they come from
/// executing its decided log), so any of them may send them. The forwarder resends from the first
/// unapplied step; the log applies a step only if it is the next of its origin
/// (`Command.logAppendFrom`), so resends, duplicates and reordering never append twice or out of
/// order.
///
/// Two uses:
/// - A checker or a harness that sees every replica's steps keeps them all (`keepsApplied`),
///   taking each from whichever replica reports it first.
/// - A replica of the origin group forwards its own steps and keeps only those not yet known to
///   be applied (`keepsApplied == false`): memory stays bounded by what the log has not taken.
///   A replica restarted from a checkpoint starts at the first step it produces after it; steps
///   before that are sent by the replicas that still hold them. A *backup* (every replica but the
///   primary forwarder) sends only one probe step per `resendNanoseconds` and learns from its
///   answer how far the log got; once steps it held at one probe are still unapplied at the next
///   (the primary is gone or cut off), it forwards like the primary until it is drained.
public struct ExtensionForwarder: Sendable {
    public let origin: UInt32
    /// The steps held, from step `firstHeld` on, as entries.
    public private(set) var steps: [String] = []
    /// The index of `steps[0]` (1 while nothing was trimmed).
    public private(set) var firstHeld: UInt64 = 1
    /// How many steps the log is known to hold.
    public private(set) var applied: UInt64 = 0
    private var lastSendNanoseconds: UInt64 = 0
    private var sentThrough: UInt64 = 0
    /// How many times unapplied steps were sent again: a driver moves to another replica of the
    /// log's group when this grows, and otherwise keeps one, whose proposals stay in order.
    public private(set) var resends = 0
    /// Steps sent per round.
    public let windowSteps: Int
    /// Unacknowledged steps are sent again after this long.
    public let resendNanoseconds: UInt64
    /// Whether applied steps stay in `steps` (checkers) or are dropped (replicas).
    public let keepsApplied: Bool
    /// A backup probes instead of forwarding until the log stops making progress.
    public let isBackup: Bool
    private var active: Bool
    /// `producedCount` when the previous probe went out.
    private var producedAtProbe: UInt64 = 0

    public init(origin: UInt32, windowSteps: Int = 64, resendNanoseconds: UInt64 = 50_000_000, keepsApplied: Bool = true,
                isBackup: Bool = false) {
        precondition(windowSteps >= 1 && resendNanoseconds >= 1, "windowSteps \(windowSteps) and resendNanoseconds \(resendNanoseconds) must be positive")
        self.origin = origin
        self.windowSteps = windowSteps
        self.resendNanoseconds = resendNanoseconds
        self.keepsApplied = keepsApplied
        self.isBackup = isBackup
        active = !isBackup
    }

    /// Steps produced so far (the index of the last one).
    public var producedCount: UInt64 { firstHeld + UInt64(steps.count) - 1 }

    /// The entry of step `index`, if held.
    public func entry(at index: UInt64) -> String? {
        guard index >= firstHeld, index <= producedCount else { return nil }
        return steps[Int(index - firstHeld)]
    }

    /// A replica executed step `index` (1-based) with this entry. Steps must come in order. A
    /// forwarder that does not keep applied steps also takes a jump ahead (a replica restarted
    /// from a checkpoint, or one that installed a peer's): it drops what it held and starts
    /// there, and the replicas that still hold the skipped steps send them.
    public mutating func produced(index: UInt64, entry: String) {
        if !keepsApplied, index > producedCount + 1 {
            steps.removeAll()
            firstHeld = index
        }
        guard index == producedCount + 1 else { return }
        if !keepsApplied, index <= applied {
            firstHeld = index + 1
            return
        }
        steps.append(entry)
    }

    /// The log's answer to a step.
    public mutating func acknowledged(_ reply: Reply) {
        if case let .extensionStep(_, appliedNow) = reply { acknowledged(applied: appliedNow) }
    }

    /// The log holds `appliedNow` steps of this origin.
    public mutating func acknowledged(applied appliedNow: UInt64) {
        applied = max(applied, appliedNow)
        guard !keepsApplied, applied >= firstHeld else { return }
        // Held steps through `applied` go; none when nothing is held (producedCount is then
        // firstHeld - 1, so add before subtracting).
        let drop = Int(min(applied, producedCount) + 1 - firstHeld)
        steps.removeFirst(drop)
        firstHeld += UInt64(drop)
    }

    public var isDrained: Bool { applied >= producedCount }

    /// The requests to send now: new steps right away, unapplied ones again after the timeout
    /// (a backup: one probe per timeout until the log stalls).
    public mutating func due(nowNanoseconds now: UInt64) -> [Request] {
        guard !isDrained else {
            if isBackup, active {
                // Passive again; the next step is probed at once.
                active = false
                lastSendNanoseconds = 0
            }
            return []
        }
        let first = max(applied + 1, firstHeld)
        if !active {
            guard now &- lastSendNanoseconds >= resendNanoseconds, let entry = entry(at: first) else { return [] }
            // Steps held at the previous probe are still not applied a whole interval later:
            // the primary is not forwarding (a live one gets steps applied within milliseconds;
            // the probes alone move the log one step per interval).
            if lastSendNanoseconds > 0, applied < producedAtProbe {
                active = true
            } else {
                lastSendNanoseconds = now
                producedAtProbe = producedCount
                return [request(first, entry)]
            }
        }
        let resend = sentThrough >= first && now &- lastSendNanoseconds >= resendNanoseconds
        if resend { resends += 1 }
        let from = resend ? first : max(first, sentThrough + 1)
        let through = min(producedCount, applied + UInt64(windowSteps))
        guard from <= through else { return [] }
        lastSendNanoseconds = now
        sentThrough = max(sentThrough, through)
        return (from...through).map { request($0, entry(at: $0)!) }
    }

    /// What was sent is lost (the link to the log's replica broke, or the driver leaves it for
    /// another): the next `due` sends from the first unapplied step as if new, without waiting
    /// for the resend timeout.
    public mutating func rewind() {
        sentThrough = min(sentThrough, applied)
    }

    private func request(_ index: UInt64, _ entry: String) -> Request {
        Request(client: Self.client(origin: origin), sequence: index, command: .logAppendFrom(origin: origin, index: index, entry: entry))
    }

    /// The pseudo-client id extension requests carry (they bypass sessions).
    public static func client(origin: UInt32) -> ClientID { .extensionClient(origin: origin) }
}

extension ExtensionForwarder {
    /// The steps a log appended, as the plain appends they became, for the log's linearizability
    /// check: invoked when first sent (or when appended, if that is known earlier), complete when
    /// a replica appended them, at the index they got. `appended` and `firstSent` are keyed by step
    /// index; steps this forwarder no longer holds are left out. The simulator and the load
    /// driver both build their histories with it.
    public func appendHistory(appended: [UInt64: (logIndex: UInt64, nanoseconds: UInt64)],
                              firstSent: [UInt64: UInt64]) -> [HistoryOperation] {
        appended.keys.sorted().compactMap { index in
            guard index >= firstHeld, index - firstHeld < UInt64(steps.count), let step = appended[index] else { return nil }
            return HistoryOperation(client: Self.client(origin: origin), command: .logAppend(entry: steps[Int(index - firstHeld)]),
                                    invokeNanoseconds: min(firstSent[index] ?? step.nanoseconds, step.nanoseconds),
                                    completion: .init(nanoseconds: step.nanoseconds, reply: .index(step.logIndex)))
        }
    }
}
