import Composition
import NIOCore
import Storage
import Services
import Workload

/// What the load generator drives: replica groups that take requests and answer them through the
/// reply callback the target was built with. The in-process cluster is one; a synthetic target of
/// known capacity (tests) is another; processes over TCP and etcd will be more.
///
/// Calls come from the load generator's event loop; a target hops to its own loops itself.
public protocol LoadTarget: AnyObject, Sendable {
    /// Which group serves a command (the composition's proxy routing; one group: always 0).
    var router: Router { get }
    var groupCount: Int { get }
    func replicaCount(of group: Int) -> Int
    /// Sends `request` to `replica` of `group`; its reply arrives later through the callback.
    func submit(_ request: Request, group: Int, replica: Int)
    /// The same, from a client at `location` (an index into the run's `ClientPlacement`; 0 when
    /// clients have no locations), `sampled` for the latency breakdown. A target that emulates
    /// link delays holds the request and its reply for the delay between that location and the
    /// replica; a target that can answers a sampled request with the replica's stage times
    /// (`ClientReply.stages`). Targets without delays or stage times ignore both.
    func submit(_ request: Request, group: Int, replica: Int, fromLocation location: Int, sampled: Bool)
    func start()
    /// Stops serving; nothing is sent to the reply callback once the future completes.
    func stop() -> EventLoopFuture<Void>
    /// Carries out a timed fault event of the workload on `group`.
    func inject(_ action: TimedEvent.Action, group: Int)
    /// Write-ahead-log counters summed over every replica that writes files, since the start;
    /// nil when nothing is written.
    var storageStats: WALStats? { get }
    /// Whether the target's own replicas forward extension steps (processes), so the load
    /// generator sees none of them: a recorded history then learns them from a final read of
    /// the log.
    var forwardsExtensionStepsItself: Bool { get }
}

extension LoadTarget {
    public var storageStats: WALStats? { nil }
    public var forwardsExtensionStepsItself: Bool { false }

    public func submit(_ request: Request, group: Int, replica: Int, fromLocation location: Int, sampled: Bool) {
        submit(request, group: group, replica: replica)
    }
}
