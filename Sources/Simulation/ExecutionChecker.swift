import Paxos
import Primitives

/// Watches what replicas deliver, from outside them: agreement (one value per slot across all
/// replicas and incarnations), delivery in slot order without gaps, and equal state digests at
/// equal slots. The simulator and the scenario tests both check with it.
public struct ExecutionChecker: Sendable {
    private var decided: [UInt64: SlotValue] = [:]
    private var decidedBy: [UInt64: Int] = [:]
    private var nextExpected: [UInt64]
    private var digests: [UInt64: (digest: Digest, replica: Int)] = [:]
    public private(set) var violations: [String] = []
    /// One past the highest slot any replica delivered (or installed a checkpoint below).
    public private(set) var deliveredBelowMax: UInt64 = 0
    private static let violationsMax = 20

    public init(replicaCount: Int) {
        nextExpected = Array(repeating: 0, count: replicaCount)
    }

    public var slotsDecided: UInt64 { UInt64(decided.count) }

    public mutating func delivered(_ delivery: Delivery, by replica: Int) {
        if delivery.slot != nextExpected[replica] {
            report("gap: r\(replica) delivered slot \(delivery.slot) when slot \(nextExpected[replica]) was next")
        }
        nextExpected[replica] = delivery.slot + 1
        deliveredBelowMax = max(deliveredBelowMax, delivery.slot + 1)
        if let earlier = decided[delivery.slot] {
            if earlier != delivery.value {
                report("agreement: slot \(delivery.slot) delivered as \(earlier) by r\(decidedBy[delivery.slot]!) but as \(delivery.value) by r\(replica)")
            }
        } else {
            decided[delivery.slot] = delivery.value
            decidedBy[delivery.slot] = replica
        }
    }

    public mutating func digest(_ digest: Digest, atSlot slot: UInt64, by replica: Int) {
        if let earlier = digests[slot] {
            if earlier.digest != digest {
                report("digest: after slot \(slot) r\(earlier.replica) had state \(earlier.digest) but r\(replica) had \(digest)")
            }
        } else {
            digests[slot] = (digest, replica)
        }
    }

    /// A restarted replica rebuilds its state from its checkpoint's slot (0 without one).
    public mutating func restarted(replica: Int, fromSlot slot: UInt64) { nextExpected[replica] = slot }

    /// A replica installed a peer's checkpoint: it delivers from `slot` on, and never goes back.
    public mutating func installed(slot: UInt64, by replica: Int) {
        if slot < nextExpected[replica] {
            report("state transfer: r\(replica) installed a checkpoint at slot \(slot) after delivering up to slot \(nextExpected[replica])")
        }
        nextExpected[replica] = max(nextExpected[replica], slot)
        deliveredBelowMax = max(deliveredBelowMax, slot)
    }

    private mutating func report(_ violation: String) {
        if violations.count < Self.violationsMax { violations.append(violation) }
    }
}
