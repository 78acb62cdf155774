import Primitives
import Services

/// A Paxos ballot: rounds order ballots, the replica breaks ties. Round 0 belongs to the initial
/// leader of each sublog, which may therefore skip phase 1 on a fresh start; every other ballot is
/// won by phase 1.
public struct Ballot: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var round: UInt64
    public var replica: ReplicaID

    public init(round: UInt64, replica: ReplicaID) {
        self.round = round
        self.replica = replica
    }

    public static func < (lhs: Ballot, rhs: Ballot) -> Bool {
        (lhs.round, lhs.replica.rawValue) < (rhs.round, rhs.replica.rawValue)
    }

    public var description: String { "\(round).\(replica.rawValue)" }
}

/// What a slot holds once decided: a batch of client requests, or nothing (a skipped slot).
public enum SlotValue: Hashable, Sendable, CustomStringConvertible {
    case noop
    case batch([Request])

    public var requestCount: Int {
        switch self {
        case .noop: 0
        case let .batch(requests): requests.count
        }
    }

    public var description: String {
        switch self {
        case .noop: "noop"
        case let .batch(requests): "batch(\(requests.map(\.description).joined(separator: ", ")))"
        }
    }
}

/// Slots `first`, `first + stride`, …, `last` of one sublog with one value. A batch occupies a
/// run of one slot; skipped slots travel as one run however many there are, so an idle leader's
/// skip costs one message.
public struct SlotRun: Hashable, Sendable, CustomStringConvertible {
    public var first: UInt64
    public var last: UInt64
    public var value: SlotValue

    public init(first: UInt64, last: UInt64, value: SlotValue) {
        precondition(first <= last, "run \(first)...\(last) is inverted")
        if case .batch = value { precondition(first == last, "a batch occupies one slot, not \(first)...\(last)") }
        self.first = first
        self.last = last
        self.value = value
    }

    public init(slot: UInt64, value: SlotValue) { self.init(first: slot, last: slot, value: value) }

    /// The run's slots, given the sublog stride.
    public func slots(stride: UInt64) -> StrideThrough<UInt64> { Swift.stride(from: first, through: last, by: Int(stride)) }

    public var description: String { first == last ? "\(first)=\(value)" : "\(first)...\(last)=\(value)" }
}

/// A decided slot handed to the executor, in slot order, without gaps.
public struct Delivery: Hashable, Sendable {
    public var slot: UInt64
    public var value: SlotValue

    public init(slot: UInt64, value: SlotValue) {
        self.slot = slot
        self.value = value
    }
}
