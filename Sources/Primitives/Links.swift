/// A directed link between two replicas of a group, by index: what partitions and one-way cuts
/// cut, in the simulator, the in-process cluster and the process cluster alike.
public struct Link: Hashable, Sendable {
    public var from: Int
    public var to: Int

    public init(_ from: Int, _ to: Int) {
        self.from = from
        self.to = to
    }

    /// The links a partition into `sides` cuts: both directions between every two replicas on
    /// different sides. A replica named on no side keeps all its links; indices outside
    /// `0..<replicas` and a replica named on two sides cut nothing of their own.
    public static func cut(bySides sides: [[Int]], replicas: Int) -> Set<Link> {
        var cut = Set<Link>()
        for (index, side) in sides.enumerated() {
            for other in sides[(index + 1)...] {
                for a in side where (0..<replicas).contains(a) {
                    for b in other where a != b && (0..<replicas).contains(b) {
                        cut.insert(Link(a, b))
                        cut.insert(Link(b, a))
                    }
                }
            }
        }
        return cut
    }
}
