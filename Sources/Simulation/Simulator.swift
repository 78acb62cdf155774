import HeapModule
import Linearizability
import Paxos
import Primitives
import Runtime
import Services

/// What a simulated run found.
public struct SimulationReport: Sendable {
    public var options: SimulationOptions
    public var violations: [String]
    public var operationsCompleted: Int
    public var slotsDecided: UInt64
    public var messagesSent: Int
    public var simulatedMilliseconds: UInt64
    public var faultLog: [String]

    public var passed: Bool { violations.isEmpty }
}

/// A deterministic simulation of one replica group and its clients.
///
/// The replica code is the production `ReplicaNode` over `PaxosReplica`; only the network, the
/// clock and the disk are simulated. Every random choice comes from one `SplitMix64` seeded with
/// `options.seed`, and every collection the run iterates has a fixed order, so a seed replays
/// exactly. Until the heal point, the network delays, reorders, drops and duplicates messages, and
/// replicas crash (at most f at a time, losing everything but their disk) and get partitioned.
/// After it, the network is reliable and every crashed replica restarts; every client must then
/// finish its operations (liveness). Checkers outside the replicas watch agreement per slot,
/// delivery without gaps, equal state digests at equal slots and, at the end, linearizability of
/// the clients' history.
public struct Simulator {
    public let options: SimulationOptions
    private let config: PaxosConfig
    private var random: SplitMix64
    private var profile: NetworkProfile
    private var now = Instant.zero
    private var events = Heap<ScheduledEvent>()
    private var eventSequence: UInt64 = 0

    private var nodes: [ReplicaNode<MemoryStorage>?]
    private var disks: [MemoryStorage]
    private var incarnation: [Int]
    private var clients: [SimulatedClient]
    /// Pairs of replicas that cannot talk (both directions are listed).
    private var blocked: Set<Pair> = []
    private var healed = false
    private var crashedCount = 0

    private var checker: ExecutionChecker
    private var faultLog: [String] = []
    private var messagesSent = 0
    private var crashedInvariantViolations: [String] = []

    private static let tickMicroseconds: UInt64 = 2_000
    /// Clients think up to this long between operations, which spreads their operations over
    /// the whole fault phase instead of finishing before the first fault.
    private var thinkMicrosecondsMax: UInt64 {
        max(1_000, 2 * options.faultPhaseMilliseconds * 1_000 / UInt64(max(1, options.operationsPerClient)))
    }
    private static let digestIntervalSlots: UInt64 = 8

    public init(options: SimulationOptions) {
        self.options = options
        config = options.paxosConfig
        var random = SplitMix64(seed: options.seed)
        profile = NetworkProfile(random: &random, faults: options.faults)
        self.random = random
        nodes = []
        disks = Array(repeating: MemoryStorage(), count: options.replicaCount)
        incarnation = Array(repeating: 0, count: options.replicaCount)
        clients = (0..<options.clientCount).map { SimulatedClient(index: $0, operations: options.operationsPerClient) }
        checker = ExecutionChecker(replicaCount: options.replicaCount)
        nodes = (0..<options.replicaCount).map { index in
            ReplicaNode(core: PaxosReplica(config: config, id: ReplicaID(index), now: .zero), storage: MemoryStorage(),
                        digestIntervalSlots: Self.digestIntervalSlots, execution: options.execution)
        }
    }

    /// Runs to the end and checks everything.
    public mutating func run() -> SimulationReport {
        for replica in 0..<options.replicaCount {
            schedule(.tick(replica), afterMicroseconds: random.next() % Self.tickMicroseconds + 1)
        }
        for client in clients.indices { schedule(.clientWake(client), afterMicroseconds: 1 + random.next() % 5_000) }
        scheduleFaults()
        let healAt = options.faultPhaseMilliseconds * 1_000
        schedule(.heal, afterMicroseconds: healAt)
        let deadline = Instant(nanoseconds: (healAt + options.livenessBudgetMilliseconds * 1_000) * 1_000)

        while let event = events.popMin() {
            if event.time > deadline { break }
            now = event.time
            handle(event.kind)
            if healed, clients.allSatisfy(\.isDone) { break }
        }

        var violations = checker.violations
        for node in nodes.compactMap({ $0 }) { violations += node.core.invariantViolations }
        violations += crashedInvariantViolations
        let unfinished = clients.filter { !$0.isDone }
        if !unfinished.isEmpty {
            violations.append("liveness: \(unfinished.count) client(s) unfinished \(options.livenessBudgetMilliseconds) ms after the heal point: "
                + unfinished.prefix(3).map(\.statusDescription).joined(separator: "; "))
        }
        let history = clients.flatMap(\.history)
        switch LinearizabilityChecker().check(history) {
        case .linearizable: break
        case let .violation(object, explanation): violations.append("linearizability of \(object): \(explanation)")
        case let .undecided(object, reason): violations.append("linearizability of \(object) undecided: \(reason)")
        }
        return SimulationReport(options: options, violations: violations,
                                operationsCompleted: history.filter { $0.completion != nil }.count,
                                slotsDecided: checker.slotsDecided, messagesSent: messagesSent,
                                simulatedMilliseconds: now.nanoseconds / 1_000_000, faultLog: faultLog)
    }

    // MARK: Events

    private mutating func handle(_ kind: EventKind) {
        switch kind {
        case let .tick(replica):
            if nodes[replica] != nil {
                let output = nodes[replica]!.tick(now: now)
                absorb(output, from: replica)
            }
            schedule(.tick(replica), afterMicroseconds: Self.tickMicroseconds)
        case let .message(from, to, message):
            guard nodes[to] != nil, !blocked.contains(Pair(from, to)) else { return }
            let output = nodes[to]!.receive(message, from: ReplicaID(from), now: now)
            absorb(output, from: to)
        case let .request(_, replica, request):
            guard nodes[replica] != nil else { return }
            let output = nodes[replica]!.clientRequest(request, now: now)
            absorb(output, from: replica)
        case let .reply(client, reply):
            clients[client].receive(reply, now: now)
            if !clients[client].isDone, clients[client].isIdle {
                schedule(.clientWake(client), afterMicroseconds: random.next() % thinkMicrosecondsMax)
            }
        case let .clientWake(client):
            if let (replica, request) = clients[client].next(now: now, random: &random, replicaCount: options.replicaCount) {
                sendToReplica(client: client, replica: replica, request: request)
                schedule(.clientTimeout(client, clients[client].attempt), afterMicroseconds: 40_000 + random.next() % 40_000)
            }
        case let .clientTimeout(client, attempt):
            guard clients[client].attempt == attempt, !clients[client].isIdle else { return }
            if let (replica, request) = clients[client].retry(replicaCount: options.replicaCount) {
                sendToReplica(client: client, replica: replica, request: request)
                schedule(.clientTimeout(client, clients[client].attempt), afterMicroseconds: 40_000 + random.next() % 40_000)
            }
        case let .crash(replica):
            guard nodes[replica] != nil, !healed, crashedCount < (options.replicaCount - 1) / 2 else { return }
            disks[replica] = nodes[replica]!.storage
            crashedInvariantViolations += nodes[replica]!.core.invariantViolations
            nodes[replica] = nil
            crashedCount += 1
            faultLog.append("\(now) crash r\(replica)")
        case let .restart(replica):
            guard nodes[replica] == nil else { return }
            restart(replica)
        case let .partition(side):
            guard !healed else { return }
            blocked = []
            for inside in side {
                for outside in 0..<options.replicaCount where !side.contains(outside) {
                    blocked.insert(Pair(inside, outside))
                    blocked.insert(Pair(outside, inside))
                }
            }
            faultLog.append("\(now) partition \(side.sorted()) from the rest")
        case .healPartition:
            if !blocked.isEmpty { faultLog.append("\(now) heal partition") }
            blocked = []
        case .heal:
            healed = true
            blocked = []
            profile.lossProbability = 0
            profile.duplicateProbability = 0
            profile.slowProbability = 0
            for replica in 0..<options.replicaCount where nodes[replica] == nil { restart(replica) }
            faultLog.append("\(now) heal: network reliable, all replicas up")
        }
    }

    private mutating func restart(_ replica: Int) {
        let disk = disks[replica]
        let core = PaxosReplica(config: config, id: ReplicaID(replica), now: now, restoring: disk.records)
        nodes[replica] = ReplicaNode(core: core, storage: disk, digestIntervalSlots: Self.digestIntervalSlots, execution: options.execution)
        incarnation[replica] += 1
        checker.restarted(replica: replica)
        crashedCount -= 1
        faultLog.append("\(now) restart r\(replica) from \(disk.records.count) persisted records")
    }

    private mutating func absorb(_ output: NodeOutput, from replica: Int) {
        for delivery in output.deliveries { checker.delivered(delivery, by: replica) }
        for (slot, digest) in output.digests { checker.digest(digest, atSlot: slot, by: replica) }
        for outgoing in output.messages {
            let to = outgoing.to.rawValue
            guard !blocked.contains(Pair(replica, to)) else { continue }
            sendOverNetwork(.message(from: replica, to: to, outgoing.message))
        }
        for reply in output.replies {
            guard let client = clients.firstIndex(where: { $0.owns(reply.client) }) else { continue }
            sendOverNetwork(.reply(client, reply))
        }
    }

    private mutating func sendToReplica(client: Int, replica: Int, request: Request) {
        sendOverNetwork(.request(client, replica, request))
    }

    /// Puts a message on the simulated wire: maybe lost, maybe duplicated, always delayed.
    private mutating func sendOverNetwork(_ kind: EventKind) {
        messagesSent += 1
        if random.chance(profile.lossProbability) { return }
        let copies = random.chance(profile.duplicateProbability) ? 2 : 1
        for _ in 0..<copies {
            var delay = profile.delayMicrosecondsMin + random.next() % (profile.delayMicrosecondsMax - profile.delayMicrosecondsMin + 1)
            if random.chance(profile.slowProbability) { delay += random.next() % profile.slowDelayMicrosecondsMax }
            schedule(kind, afterMicroseconds: delay)
        }
    }

    private mutating func scheduleFaults() {
        let phase = options.faultPhaseMilliseconds * 1_000
        guard options.faults, phase > 0 else { return }
        for _ in 0..<profile.crashes {
            let replica = Int(random.next() % UInt64(options.replicaCount))
            let at = random.next() % phase
            let downFor = 20_000 + random.next() % 400_000
            schedule(.crash(replica), afterMicroseconds: at)
            schedule(.restart(replica), afterMicroseconds: at + downFor)
        }
        for _ in 0..<profile.partitions {
            let at = random.next() % phase
            let lasting = 20_000 + random.next() % 400_000
            // A random side of 1 ... n-1 replicas: sometimes a minority, sometimes a majority.
            let size = 1 + Int(random.next() % UInt64(max(1, options.replicaCount - 1)))
            var members = Array(0..<options.replicaCount)
            for index in members.indices.reversed() where index > 0 {
                members.swapAt(index, Int(random.next() % UInt64(index + 1)))
            }
            schedule(.partition(Set(members.prefix(size))), afterMicroseconds: at)
            schedule(.healPartition, afterMicroseconds: at + lasting)
        }
    }

    private mutating func schedule(_ kind: EventKind, afterMicroseconds delay: UInt64) {
        eventSequence += 1
        events.insert(ScheduledEvent(time: now.adding(microseconds: delay), sequence: eventSequence, kind: kind))
    }
}

private struct Pair: Hashable {
    var from: Int
    var to: Int
    init(_ from: Int, _ to: Int) {
        self.from = from
        self.to = to
    }
}

enum EventKind {
    case tick(Int)
    case message(from: Int, to: Int, PaxosMessage)
    case request(Int, Int, Request)
    case reply(Int, ClientReplyOut)
    case clientWake(Int)
    case clientTimeout(Int, Int)
    case crash(Int)
    case restart(Int)
    case partition(Set<Int>)
    case healPartition
    case heal
}

/// Events ordered by time, then by the order they were scheduled (so equal times replay too).
struct ScheduledEvent: Comparable {
    var time: Instant
    var sequence: UInt64
    var kind: EventKind

    static func < (lhs: ScheduledEvent, rhs: ScheduledEvent) -> Bool {
        (lhs.time, lhs.sequence) < (rhs.time, rhs.sequence)
    }

    static func == (lhs: ScheduledEvent, rhs: ScheduledEvent) -> Bool {
        lhs.time == rhs.time && lhs.sequence == rhs.sequence
    }
}
