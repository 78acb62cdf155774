// Time as pure modules see it: a number handed in by the driver, never read from a clock.

/// A point in time, in nanoseconds since an arbitrary origin (the simulator starts at 0; real
/// drivers use a monotonic clock).
public struct Instant: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var nanoseconds: UInt64

    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    public static let zero = Instant(nanoseconds: 0)

    public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    public func adding(microseconds: UInt64) -> Instant { Instant(nanoseconds: nanoseconds &+ microseconds &* 1_000) }

    /// Microseconds from `earlier` to this instant; 0 if `earlier` is later.
    public func microseconds(since earlier: Instant) -> UInt64 {
        nanoseconds >= earlier.nanoseconds ? (nanoseconds - earlier.nanoseconds) / 1_000 : 0
    }

    public var description: String { "\(nanoseconds / 1_000)µs" }
}
