import Execution
import Paxos
import Primitives
import Services

/// What a replica node asks its driver to do after an input.
public struct NodeOutput: Sendable {
    /// Messages for other replicas of the group (messages to itself are handled inside the node).
    public var messages: [Outgoing] = []
    /// Replies owed to clients that sent their request to this node.
    public var replies: [ClientReply] = []
    /// Slots delivered and executed by this input, in order.
    public var deliveries: [Delivery] = []
    /// State digests taken after executing the given slot (every `digestIntervalSlots`).
    public var digests: [(slot: UInt64, digest: Digest)] = []
    /// Requests refused because the proposer's queue was full.
    public var dropped: [Request] = []
    /// Extension steps produced by executing puts (when this node's group extends them), in order.
    public var extensionSteps: [(index: UInt64, entry: String)] = []
    /// Extension steps this node's log appended: origin, step index, log index.
    public var extensionsAppended: [(origin: UInt32, index: UInt64, logIndex: UInt64)] = []

    public init() {}
}

/// The replica driver: runs the pure Paxos core's effects in the order it demands (persist, then
/// send), loops messages addressed to itself back in, and executes delivered batches on the
/// replica's state machine, answering the clients that asked this replica.
///
/// It is a value too: the clock, the network and the disk stay outside, in whoever steps it (the
/// simulator, the in-process cluster, the TCP server). `storage` is the disk: after a crash, a new
/// node is built from it and nothing else.
public struct ReplicaNode<Storage: PaxosStorage>: Sendable where Storage: Sendable {
    public private(set) var core: PaxosReplica
    /// Sequential execution's state, or nil when a parallel executor holds the state.
    private var sequentialMachine: StateMachine?
    /// Parallel execution (shared by copies of this value; nodes are not copied in practice).
    private let executor: ParallelExecutor?
    public private(set) var storage: Storage
    /// Requests this node must answer once executed (the client sent them here).
    private var owed: Set<OwedReply> = []
    /// Take a state digest after every this many delivered slots (0: never).
    public var digestIntervalSlots: UInt64
    /// When set, every executed `kv.put` also yields an extension step of this origin.
    public let extensionOrigin: UInt32?
    /// Extension steps produced so far: deterministic, as it counts executed puts in slot order.
    private var extensionStepCount: UInt64 = 0

    /// - Parameter execution: how delivered commands run; `.sequential` applies them one by one on
    ///   a `StateMachine`, the others use a `ParallelExecutor` with the same results.
    public init(core: PaxosReplica, storage: Storage, limits: ServiceLimits = ServiceLimits(), digestIntervalSlots: UInt64 = 0,
                execution: ExecutionConfig = ExecutionConfig(), extensionOrigin: UInt32? = nil) {
        self.core = core
        self.extensionOrigin = extensionOrigin
        self.storage = storage
        if execution.scheduler == .sequential, execution.spinIterationsPerCommand == 0 {
            sequentialMachine = StateMachine(limits: limits)
            executor = nil
        } else {
            sequentialMachine = nil
            executor = ParallelExecutor(config: execution, limits: limits)
        }
        self.digestIntervalSlots = digestIntervalSlots
    }

    /// The replica's whole service state (assembled from the executor's partitions if parallel).
    public var machine: StateMachine { sequentialMachine ?? executor!.stateMachine }

    public var id: ReplicaID { core.id }

    /// A request from a client. A retry of a request this replica already executed is answered
    /// from its session table at once; anything else goes to consensus.
    public mutating func clientRequest(_ request: Request, now: Instant) -> NodeOutput {
        var output = NodeOutput()
        let verdict = sequentialMachine?.sessionVerdict(for: request) ?? executor!.sessionVerdict(for: request)
        if case let .duplicate(reply) = verdict {
            output.replies.append(ClientReply(client: request.client, sequence: request.sequence, reply: reply))
            return output
        }
        owed.insert(OwedReply(request))
        run(core.propose(request, now: now), now: now, into: &output)
        return output
    }

    public mutating func receive(_ message: PaxosMessage, from sender: ReplicaID, now: Instant) -> NodeOutput {
        var output = NodeOutput()
        run(core.receive(message, from: sender, now: now), now: now, into: &output)
        return output
    }

    public mutating func tick(now: Instant) -> NodeOutput {
        var output = NodeOutput()
        run(core.tick(now: now), now: now, into: &output)
        return output
    }

    /// Carries out one `Ready` and every `Ready` its self-addressed messages produce.
    private mutating func run(_ first: Ready, now: Instant, into output: inout NodeOutput) {
        // First in, first out: the Readys of self-addressed messages run in the order the core
        // produced them, so deliveries stay in slot order whatever the core sends itself.
        var pending = [first]
        var next = 0
        while next < pending.count {
            let ready = pending[next]
            next += 1
            execute(ready.deliveries, into: &output)
            for request in ready.dropped {
                owed.remove(OwedReply(request))
                output.dropped.append(request)
            }
            for outgoing in ready.messages(persistingTo: &storage) {
                if outgoing.to == id {
                    pending.append(core.receive(outgoing.message, from: id, now: now))
                } else {
                    output.messages.append(outgoing)
                }
            }
        }
    }

    private mutating func execute(_ deliveries: [Delivery], into output: inout NodeOutput) {
        for delivery in deliveries {
            if case let .batch(requests) = delivery.value {
                var replies: [Reply] = []
                var executed: [Bool] = []
                if sequentialMachine != nil {
                    for request in requests {
                        let (reply, ran) = sequentialMachine!.applyReportingExecution(request)
                        replies.append(reply)
                        executed.append(ran)
                    }
                } else {
                    replies = executor!.execute(requests)
                    executed = executor!.lastExecuted
                }
                for (position, request) in requests.enumerated() {
                    let reply = replies[position]
                    if owed.remove(OwedReply(request)) != nil {
                        output.replies.append(ClientReply(client: request.client, sequence: request.sequence, reply: reply))
                    }
                    if let origin = extensionOrigin, executed[position], case let .kvPut(key, value) = request.command {
                        extensionStepCount += 1
                        output.extensionSteps.append((extensionStepCount, ExtensionEntry.text(origin: origin, index: extensionStepCount, key: key, value: value)))
                    }
                    if case let .logAppendFrom(origin, index, _) = request.command, case let .extensionStep(appendedAt?, _) = reply {
                        output.extensionsAppended.append((origin, index, appendedAt))
                    }
                }
            }
            output.deliveries.append(delivery)
            if digestIntervalSlots > 0, (delivery.slot + 1) % digestIntervalSlots == 0 {
                output.digests.append((delivery.slot, machine.digest))
            }
        }
    }
}

/// The log entry an extension step appends for a put.
public enum ExtensionEntry {
    public static func text(origin: UInt32, index: UInt64, key: String, value: String) -> String {
        "g\(origin)#\(index) put \(key)=\(value)"
    }
}

private struct OwedReply: Hashable, Sendable {
    var client: ClientID
    var sequence: UInt64
    init(_ request: Request) {
        client = request.client
        sequence = request.sequence
    }
}
