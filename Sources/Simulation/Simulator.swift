import Composition
import Execution
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
    public var extensionSteps: Int
    /// Syncs the simulated disks performed (group commit makes this far fewer than records).
    public var syncs: Int
    /// Skip runs sent ahead of every batch their owner knew of (see `PaxosReplica`), over every
    /// replica's lives.
    public var skipsAhead: UInt64

    public var passed: Bool { violations.isEmpty }
}

/// A deterministic simulation of one or more replica groups and their clients.
///
/// The replica code is the production `ReplicaNode` over `PaxosReplica`; only the network, the
/// clock and the disk are simulated. Each replica's disk (`SimulatedDisk`) makes records durable
/// only when a simulated sync completes, and the simulator drives every node as a real driver
/// does: outputs wait in an `EffectGate` until the disk has caught up, so a crash loses exactly
/// what a real one would and nothing that left the replica. Every random choice comes from one `SplitMix64` seeded with
/// `options.seed`, and every collection the run iterates has a fixed order, so a seed replays
/// exactly. Until the heal point, the network delays, reorders, drops and duplicates messages,
/// replicas crash (at most f of a group at a time, losing everything but what their disk synced;
/// some crashes are aimed where unsynced state would hurt) and get partitioned from their group;
/// each seed draws which of these faults it injects (`FaultProfile`). After it, the network is
/// reliable and every crashed replica restarts; every client must then finish its operations,
/// every extension step must reach the log, and the replicas must converge (liveness). Checkers
/// outside the replicas watch agreement per slot, delivery without gaps and equal state digests
/// at equal slots in every group, the extension's log against the origin group's puts, and at the
/// end linearizability of the clients' history and the presence of every acknowledged write in
/// every replica's final state (`AcknowledgedWriteChecker`).
///
/// With a composition, clients route by its `Router` (the proxy, in process) and an
/// `ExtensionForwarder` per origin group carries extension steps to the log's group.
public struct Simulator {
    public let options: SimulationOptions
    private let spec: CompositionSpec
    private let router: Router
    private var random: SplitMix64
    private var profile: FaultProfile
    private var now = Instant.zero
    private var events = Heap<ScheduledEvent>()
    private var eventSequence: UInt64 = 0

    private var groups: [SimulatedGroup]
    private var clients: [SimulatedClient]
    /// The earliest tick event scheduled for each client, if any.
    private var clientTickAt: [Instant?]
    private var healed = false
    private var forwarders: [Int: ExtensionForwarder] = [:]
    /// Per extension step (origin group, index): when it was first sent, and where it landed.
    private var extensionFirstSent: [StepKey: UInt64] = [:]
    private var extensionAppended: [StepKey: (logIndex: UInt64, nanoseconds: UInt64)] = [:]
    private var extensionViolations: [String] = []
    private var faultLog: [String] = []
    private var messagesSent = 0
    private var crashedInvariantViolations: [String] = []
    private var targetedCrashes = 0

    private static let tickMicroseconds: UInt64 = 2_000
    /// Added to every one-way delay in seeds with wide-area links: two ticks.
    private static let wideAreaDelayMicroseconds: UInt64 = 4_000
    /// A run handles far fewer events (about 10⁴ to 10⁵); beyond this, replicas are in a message
    /// storm that would keep the run going for hours: a failure of its own.
    private static let eventsMax = 4_000_000
    private var eventBudgetExhausted = false
    private static let digestIntervalSlots: UInt64 = 8
    /// Clients think up to this long between operations, which spreads their operations over
    /// the whole fault phase instead of finishing before the first fault.
    private var thinkMicrosecondsMax: UInt64 {
        max(1_000, 2 * options.faultPhaseMilliseconds * 1_000 / UInt64(max(1, options.operationsPerClient)))
    }

    public init(options: SimulationOptions) {
        self.options = options
        spec = options.groupSpec
        router = Router(spec: spec)
        var random = SplitMix64(seed: options.seed)
        profile = FaultProfile(random: &random, faults: options.faults)
        if options.wideAreaLinks {
            profile.delayMicrosecondsMin += Self.wideAreaDelayMicroseconds
            profile.delayMicrosecondsMax += Self.wideAreaDelayMicroseconds
        }
        let replicaCounts = spec.groups.map(\.replicas)
        clients = []
        for index in 0..<options.clientCount {
            // Timeouts of 40–80 ms per client, so retries after a fault do not all land at once;
            // each client starts at a random replica of each group.
            var firstReplicas: [Int] = []
            for count in replicaCounts { firstReplicas.append(Int(random.next() % UInt64(count))) }
            let config = ProxyCore.Config(replicaCounts: replicaCounts, firstReplicas: firstReplicas,
                                          retryTimeoutNanoseconds: (40_000 + random.next() % 40_000) * 1_000)
            let proxy = ProxyCore(nonce: .nonce(using: &random), router: router, config: config)
            clients.append(SimulatedClient(index: index, operations: options.operationsPerClient, proxy: proxy))
        }
        clientTickAt = Array(repeating: nil, count: options.clientCount)
        self.random = random
        faultLog.append(profile.description)
        faultLog.append("links \(profile.delayMicrosecondsMin)...\(profile.delayMicrosecondsMax) µs one way\(options.wideAreaLinks ? " (wide area)" : ""); "
                        + "skip ahead \(options.skipAheadPercent) %")
        groups = []
        for index in spec.groups.indices {
            var config = spec.paxosConfig(of: index, simulated: true)
            config.skipAheadPercent = options.skipAheadPercent
            if options.composition == nil { config = options.paxosConfig }
            let origin: UInt32? = router.extensionOrigin == index ? UInt32(index) : nil
            groups.append(SimulatedGroup(index: index, config: config, execution: options.execution, extensionOrigin: origin,
                                         digestIntervalSlots: Self.digestIntervalSlots, checkpointIntervalSlots: options.checkpointIntervalSlots,
                                         disk: profile.disk, seed: options.seed))
        }
        if let origin = router.extensionOrigin { forwarders[origin] = ExtensionForwarder(origin: UInt32(origin)) }
    }

    /// Runs to the end and checks everything.
    public mutating func run() -> SimulationReport {
        for group in groups.indices {
            for replica in 0..<groups[group].replicaCount {
                schedule(.tick(group, replica), afterMicroseconds: random.next() % Self.tickMicroseconds + 1)
            }
        }
        for client in clients.indices { schedule(.clientWake(client), afterMicroseconds: 1 + random.next() % 5_000) }
        scheduleFaults()
        let healAt = options.faultPhaseMilliseconds * 1_000
        schedule(.heal, afterMicroseconds: healAt)
        let deadline = Instant(nanoseconds: (healAt + options.livenessBudgetMilliseconds * 1_000) * 1_000)

        var eventsHandled = 0
        while let event = events.popMin() {
            if event.time > deadline { break }
            eventsHandled += 1
            if eventsHandled > Self.eventsMax {
                eventBudgetExhausted = true
                break
            }
            now = event.time
            handle(event.kind)
            if healed, clients.allSatisfy(\.isDone), forwarders.values.allSatisfy(\.isDrained), groups.allSatisfy(\.hasConverged) { break }
            // Stop at the first broken safety property: what follows a broken invariant is noise
            // (and replica code need not terminate once agreement is gone).
            if groups.contains(where: \.hasSafetyViolation) || !crashedInvariantViolations.isEmpty { break }
        }
        return report()
    }

    private func report() -> SimulationReport {
        var violations: [String] = []
        if eventBudgetExhausted {
            violations.append("liveness: \(Self.eventsMax) events handled by \(now.nanoseconds / 1_000_000) ms simulated (a message storm)")
        }
        for group in groups {
            violations += (group.checker.violations + group.acceptors.violations).map { groups.count > 1 ? "group \(spec.groups[group.index].name): \($0)" : $0 }
            for node in group.nodes.compactMap({ $0 }) { violations += node.core.invariantViolations }
        }
        violations += crashedInvariantViolations
        violations += extensionViolations
        violations += checkExtension()
        let unfinished = clients.filter { !$0.isDone }
        if !unfinished.isEmpty {
            violations.append("liveness: \(unfinished.count) client(s) unfinished \(options.livenessBudgetMilliseconds) ms after the heal point: "
                + unfinished.prefix(3).map(\.statusDescription).joined(separator: "; "))
        }
        for group in groups where !group.hasConverged {
            violations.append("liveness: replicas of group \(spec.groups[group.index].name) did not converge after the heal point: "
                + group.nodes.enumerated().map { "r\($0.offset) " + ($0.element.map { "delivered below \($0.core.deliveredBelow)" } ?? "down") }
                    .joined(separator: ", ") + "; slots delivered below \(group.checker.deliveredBelowMax) somewhere")
        }
        var history = clients.flatMap(\.history)
        violations += AcknowledgedWriteChecker.check(history: history, router: router,
                                                     machines: groups.map { group in group.nodes.map { $0?.machine } })
        history += extensionHistory()
        switch LinearizabilityChecker().check(history) {
        case .linearizable: break
        case let .violation(object, explanation): violations.append("linearizability of \(object): \(explanation)")
        case let .undecided(object, reason): violations.append("linearizability of \(object) undecided: \(reason)")
        }
        return SimulationReport(options: options, violations: violations,
                                operationsCompleted: clients.flatMap(\.history).filter { $0.completion != nil }.count,
                                slotsDecided: groups.reduce(0) { $0 + $1.checker.slotsDecided }, messagesSent: messagesSent,
                                simulatedMilliseconds: now.nanoseconds / 1_000_000, faultLog: faultLog,
                                extensionSteps: forwarders.values.reduce(0) { $0 + $1.steps.count },
                                syncs: groups.reduce(0) { $0 + $1.disks.reduce(0) { $0 + $1.syncs } },
                                skipsAhead: groups.reduce(0) { $0 + $1.skipsAheadOfPastLives + $1.nodes.reduce(0) { $0 + ($1?.core.skipsAhead ?? 0) } })
    }

    // MARK: Extension checks

    /// The log must hold exactly the origin's puts, in the origin's order, each once; after the
    /// heal every step must have arrived.
    private func checkExtension() -> [String] {
        guard let target = router.extensionTarget else { return [] }
        var violations: [String] = []
        for (origin, forwarder) in forwarders.sorted(by: { $0.key < $1.key }) {
            if !forwarder.isDrained {
                violations.append("liveness: extension of group \(origin): \(forwarder.applied) of \(forwarder.steps.count) steps reached the log")
            }
            let prefix = ExtensionStep.prefix(origin: UInt32(origin))
            for node in groups[target].nodes.compactMap({ $0 }) {
                let log = node.machine.log
                let found = log.entries.filter { $0.hasPrefix(prefix) }
                let applied = log.originApplied[UInt32(origin)] ?? 0
                // Clients may truncate the log, so the log holds the newest steps: a suffix of the
                // first `applied` steps, contiguous and in order.
                let expected = Array(forwarder.steps.prefix(Int(applied)).suffix(found.count))
                if Array(found) != expected || applied > UInt64(forwarder.steps.count) {
                    violations.append("extension: r\(node.id.rawValue) of group \(spec.groups[target].name) holds \(found.count) steps of group \(origin) that are not its puts in order (applied \(applied) of \(forwarder.steps.count))")
                }
            }
        }
        return violations
    }

    /// Extension steps as the plain appends they became, for the log's linearizability check:
    /// invoked when first sent, complete when a replica appended them, at the index they got.
    private func extensionHistory() -> [HistoryOperation] {
        forwarders.sorted { $0.key < $1.key }.flatMap { origin, forwarder in
            forwarder.appendHistory(
                appended: Dictionary(uniqueKeysWithValues: extensionAppended.filter { $0.key.origin == origin }.map { ($0.key.index, $0.value) }),
                firstSent: Dictionary(uniqueKeysWithValues: extensionFirstSent.filter { $0.key.origin == origin }.map { ($0.key.index, $0.value) }))
        }
    }

    // MARK: Events

    private mutating func handle(_ kind: EventKind) {
        switch kind {
        case let .tick(group, replica):
            if groups[group].nodes[replica] != nil {
                let output = groups[group].nodes[replica]!.tick(now: now)
                absorb(output, group: group, from: replica)
            }
            if group == router.extensionOrigin, replica == 0 { forwardExtensionSteps() }
            schedule(.tick(group, replica), afterMicroseconds: Self.tickMicroseconds)
        case let .message(group, from, to, message):
            guard groups[group].nodes[to] != nil, !groups[group].isCut(from, to) else { return }
            let output = groups[group].nodes[to]!.receive(message, from: ReplicaID(from), now: now)
            absorb(output, group: group, from: to)
            switch message {
            case .prepare, .promise:
                // A competing leader's phase 1: crash the replica right after it handled it,
                // sometimes before its promise is synced, sometimes just after it left.
                if random.chance(profile.crashInPhaseOneProbability) {
                    let beforeItsSync = random.next() % 2 == 0
                    let delay = beforeItsSync ? 0 : random.next() % 1_500
                    crashTargeted(group, to, reason: "in phase 1", afterMicroseconds: delay)
                }
            default: break
            }
        case let .request(group, replica, request):
            guard groups[group].nodes[replica] != nil else { return }
            let output = groups[group].nodes[replica]!.clientRequest(request, now: now)
            absorb(output, group: group, from: replica)
        case let .reply(client, group, reply):
            send(clients[client].receive(reply, group: group, now: now), from: client)
            if !clients[client].isDone, clients[client].isIdle {
                schedule(.clientWake(client), afterMicroseconds: random.next() % thinkMicrosecondsMax)
            }
        case let .extensionReply(origin, reply):
            forwarders[origin]?.acknowledged(reply.reply)
        case let .clientWake(client):
            send(clients[client].next(now: now, random: &random), from: client)
        case let .clientTick(client):
            if clientTickAt[client] == now { clientTickAt[client] = nil }
            send(clients[client].tick(now: now), from: client)
        case let .crash(group, replica, reason):
            // Crashes at random times keep a majority up; aimed ones (a reason) may take down
            // more, briefly: safety must not depend on how many replicas crash at once, only on
            // what their disks keep, and two replicas that both lose an unsynced acceptance are
            // where a record written too late loses a decided value.
            guard groups[group].nodes[replica] != nil, !healed,
                  reason != nil || groups[group].crashed < (groups[group].replicaCount - 1) / 2 else { return }
            let (violations, lost, torn) = groups[group].crash(replica)
            crashedInvariantViolations += violations
            faultLog.append("\(now) crash \(name(group, replica))\(reason.map { " " + $0 } ?? ""): \(lost) unsynced record(s) lost"
                + (torn.map { ", the next one torn after \($0) bytes" } ?? ""))
        case let .disk(group, replica, incarnation, completion):
            let disk = groups[group].disks[replica]
            guard groups[group].nodes[replica] != nil, disk.incarnation == incarnation else { return }
            let durable = disk.complete(completion)
            scheduleDiskIO(group, replica)
            for effects in groups[group].gates[replica].release(durablePosition: durable) { send(effects, group: group, from: replica) }
        case let .executed(group, replica, job):
            guard groups[group].nodes[replica] != nil else { return }
            let output = groups[group].nodes[replica]!.executed(job.run(), now: now)
            absorb(output, group: group, from: replica)
        case let .restart(group, replica):
            guard groups[group].nodes[replica] == nil else { return }
            restart(group, replica)
        case let .partition(group, side):
            guard !healed else { return }
            groups[group].partition(side)
            faultLog.append("\(now) partition \(side.sorted().map { name(group, $0) }) from the rest of their group")
        case let .cutLink(group, from, to):
            guard !healed else { return }
            groups[group].oneWayCuts.insert(Link(from, to))
            faultLog.append("\(now) cut the link \(name(group, from)) -> \(name(group, to)) (one way)")
        case let .restoreLink(group, from, to):
            if groups[group].oneWayCuts.remove(Link(from, to)) != nil { faultLog.append("\(now) restore the link \(name(group, from)) -> \(name(group, to))") }
        case let .healPartition(group):
            if !groups[group].blocked.isEmpty { faultLog.append("\(now) heal partition\(groups.count > 1 ? " in group \(spec.groups[group].name)" : "")") }
            groups[group].blocked = []
        case .heal:
            healed = true
            profile.lossProbability = 0
            profile.duplicateProbability = 0
            profile.slowProbability = 0
            for group in groups.indices {
                groups[group].blocked = []
                groups[group].oneWayCuts = []
                for replica in 0..<groups[group].replicaCount where groups[group].nodes[replica] == nil { restart(group, replica) }
            }
            faultLog.append("\(now) heal: network reliable, all replicas up")
        }
    }

    private func name(_ group: Int, _ replica: Int) -> String {
        groups.count > 1 ? "\(spec.groups[group].name)/r\(replica)" : "r\(replica)"
    }

    private mutating func restart(_ group: Int, _ replica: Int) {
        let restored = groups[group].restart(replica, now: now)
        scheduleDiskIO(group, replica)
        faultLog.append("\(now) restart \(name(group, replica)) from \(restored.checkpointSlot > 0 ? "the checkpoint at slot \(restored.checkpointSlot) and " : "")\(restored.records) persisted records")
    }

    private mutating func absorb(_ output: NodeOutput, group: Int, from replica: Int) {
        if let transfer = output.stateTransfer {
            faultLog.append("\(now) \(name(group, replica)) installed \(name(group, transfer.from.rawValue))'s checkpoint at slot \(transfer.slot) (\(transfer.bytes) bytes)")
        }
        scheduleDiskIO(group, replica)
        scheduleExecution(output.executions, group, replica)
        // As a real driver does: effects wait in the gate until the disk has synced the records
        // they depend on, and leave in the order of the inputs that produced them.
        let disk = groups[group].disks[replica]
        for effects in groups[group].gates[replica].pass(output, durablePosition: disk.durablePosition) {
            send(effects, group: group, from: replica)
        }
    }

    /// Runs a replica's execution jobs as a real executor's lane does: one at a time, in order,
    /// each taking a while drawn from the seed, while the replica goes on with consensus.
    private mutating func scheduleExecution(_ jobs: [ExecutionJob], _ group: Int, _ replica: Int) {
        for job in jobs {
            let start = max(now, groups[group].executionFreeAt[replica])
            let finish = start.adding(microseconds: 5 + random.next() % (20 + 20 * UInt64(job.slotCount)))
            groups[group].executionFreeAt[replica] = finish
            schedule(.executed(group, replica, job), afterMicroseconds: (finish.nanoseconds - now.nanoseconds) / 1_000)
        }
    }

    /// Completes the disk operations a replica started, each after its simulated latency.
    private mutating func scheduleDiskIO(_ group: Int, _ replica: Int) {
        let disk = groups[group].disks[replica]
        for started in disk.takeStarted(nowMicroseconds: now.nanoseconds / 1_000) {
            schedule(.disk(group, replica, disk.incarnation, started.completion), afterMicroseconds: started.delayMicroseconds)
        }
    }

    /// Crashes a replica where it hurts (see `FaultProfile`), within the run's budget of targeted
    /// crashes; it restarts after a short while, so that messages of its previous life still meet it.
    private mutating func crashTargeted(_ group: Int, _ replica: Int, reason: String, afterMicroseconds delay: UInt64) {
        guard !healed, targetedCrashes < profile.targetedCrashesMax, groups[group].nodes[replica] != nil else { return }
        targetedCrashes += 1
        schedule(.crash(group, replica, reason: reason), afterMicroseconds: delay)
        schedule(.restart(group, replica), afterMicroseconds: delay + 1_000 + random.next() % 40_000)
    }

    /// Carries out effects released by the gate: messages, extension steps, client replies.
    private mutating func send(_ effects: NodeEffects, group: Int, from replica: Int) {
        // Deliveries count once durable: a replica that executed a decision only it knew (its own
        // skip, its own acceptance counted toward a quorum) and crashed before the sync never
        // made it known, and its next life may see the slot decided otherwise. An installed
        // checkpoint comes before the deliveries that follow it.
        if let slot = effects.installedSlot { groups[group].checker.installed(slot: slot, by: replica) }
        for delivery in effects.deliveries { groups[group].checker.delivered(delivery, by: replica) }
        for (slot, digest) in effects.digests { groups[group].checker.digest(digest, atSlot: slot, by: replica) }
        for outgoing in effects.messages {
            groups[group].acceptors.sent(outgoing.message, by: replica)
            let to = outgoing.to.rawValue
            guard !groups[group].isCut(replica, to) else { continue }
            sendOverNetwork(.message(group, from: replica, to: to, outgoing.message))
        }
        for put in effects.extensionSteps {
            let step = (index: put.index, entry: ExtensionStep(origin: UInt32(group), index: put.index, key: put.key, value: put.value).entry)
            if let known = forwarders[group]?.steps, step.index <= UInt64(known.count) {
                if known[Int(step.index - 1)] != step.entry, extensionViolations.count < 5 {
                    extensionViolations.append("extension: \(name(group, replica)) produced step \(step.index) as \(step.entry) but another replica as \(known[Int(step.index - 1)])")
                }
            } else {
                forwarders[group]?.produced(index: step.index, entry: step.entry)
            }
        }
        for appended in effects.extensionsAppended {
            let key = StepKey(origin: Int(appended.origin), index: appended.index)
            if extensionAppended[key] == nil { extensionAppended[key] = (appended.logIndex, now.nanoseconds) }
        }
        for reply in effects.replies {
            if let origin = forwarders.keys.first(where: { ExtensionForwarder.client(origin: UInt32($0)) == reply.client }) {
                sendOverNetwork(.extensionReply(origin, reply))
                continue
            }
            guard let client = clients.firstIndex(where: { $0.owns(reply.client, group: group) }) else { continue }
            sendOverNetwork(.reply(client, group, reply))
        }
        // Whatever just left may depend on records a crash now would lose (it must not): a reply,
        // or a message that states a promise, an acceptance or a decision.
        if groups[group].disks[replica].unsyncedRecords > 0, !effects.replies.isEmpty || effects.messages.contains(where: { !$0.message.revealsNothingVolatile }),
           random.chance(profile.crashAfterReplyProbability) {
            crashTargeted(group, replica, reason: "after effects left, before the next sync", afterMicroseconds: 0)
        }
    }

    /// The forwarder's due steps go to one replica of the log's group, a different one each round.
    private mutating func forwardExtensionSteps() {
        guard let target = router.extensionTarget else { return }
        for origin in forwarders.keys.sorted() {
            let requests = forwarders[origin]!.due(nowNanoseconds: now.nanoseconds)
            guard !requests.isEmpty else { continue }
            let replica = Int(random.next() % UInt64(groups[target].replicaCount))
            for request in requests {
                let key = StepKey(origin: origin, index: request.sequence)
                if extensionFirstSent[key] == nil { extensionFirstSent[key] = now.nanoseconds }
                sendOverNetwork(.request(target, replica, request))
            }
        }
    }

    /// Sends a client's requests, and makes sure a tick comes when its core next wants one. A
    /// tick that comes early or finds nothing to do is harmless, so stale ones are not cancelled.
    private mutating func send(_ sends: [SimulatedClient.Send], from client: Int) {
        for send in sends { sendOverNetwork(.request(send.group, send.replica, send.2)) }
        guard let deadline = clients[client].nextDeadline else { return }
        if let armed = clientTickAt[client], armed <= deadline { return }
        clientTickAt[client] = deadline
        schedule(.clientTick(client), afterMicroseconds: (deadline.nanoseconds &- min(deadline.nanoseconds, now.nanoseconds) + 999) / 1_000)
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
            let group = Int(random.next() % UInt64(groups.count))
            let replica = Int(random.next() % UInt64(groups[group].replicaCount))
            let at = random.next() % phase
            let downFor = 20_000 + random.next() % 400_000
            schedule(.crash(group, replica, reason: nil), afterMicroseconds: at)
            schedule(.restart(group, replica), afterMicroseconds: at + downFor)
        }
        for _ in 0..<profile.partitions {
            let group = Int(random.next() % UInt64(groups.count))
            let count = groups[group].replicaCount
            let at = random.next() % phase
            let lasting = 20_000 + random.next() % 400_000
            // A random side of 1 ... n-1 replicas: sometimes a minority, sometimes a majority.
            let size = 1 + Int(random.next() % UInt64(max(1, count - 1)))
            var members = Array(0..<count)
            for index in members.indices.reversed() where index > 0 {
                members.swapAt(index, Int(random.next() % UInt64(index + 1)))
            }
            schedule(.partition(group, Set(members.prefix(size))), afterMicroseconds: at)
            schedule(.healPartition(group), afterMicroseconds: at + lasting)
        }
        for _ in 0..<profile.oneWayCuts {
            let group = Int(random.next() % UInt64(groups.count))
            let count = UInt64(groups[group].replicaCount)
            guard count > 1 else { continue }
            let from = Int(random.next() % count)
            let to = (from + 1 + Int(random.next() % (count - 1))) % Int(count)
            let at = random.next() % phase
            let lasting = 20_000 + random.next() % 400_000
            schedule(.cutLink(group, from, to), afterMicroseconds: at)
            schedule(.restoreLink(group, from, to), afterMicroseconds: at + lasting)
            // Half the time both ways: two replicas that cannot talk while each reaches the
            // rest (a partial partition), so each may lead at once without hearing of the other.
            if random.next() % 2 == 0 {
                schedule(.cutLink(group, to, from), afterMicroseconds: at)
                schedule(.restoreLink(group, to, from), afterMicroseconds: at + lasting)
            }
        }
    }

    private mutating func schedule(_ kind: EventKind, afterMicroseconds delay: UInt64) {
        eventSequence += 1
        events.insert(ScheduledEvent(time: now.adding(microseconds: delay), sequence: eventSequence, kind: kind))
    }
}

/// One replica group of a simulation: its nodes, their disks, its partitions and its checker.
struct SimulatedGroup {
    let index: Int
    let config: PaxosConfig
    let execution: ExecutionConfig
    let extensionOrigin: UInt32?
    let digestIntervalSlots: UInt64
    let checkpointIntervalSlots: UInt64
    var nodes: [ReplicaNode<SimulatedDisk>?]
    /// `PaxosReplica.skipsAhead` of crashed incarnations.
    var skipsAheadOfPastLives: UInt64 = 0
    /// One disk per replica, for the whole run: it outlives the replica's crashes.
    let disks: [SimulatedDisk]
    /// Per replica, the outputs waiting for their records to be durable.
    var gates: [EffectGate]
    /// Per replica, when its executor's lane finishes the jobs handed to it so far.
    var executionFreeAt: [Instant]
    /// What each crashed replica's disk held at the crash.
    private var survived: [RecoveredState?]
    var blocked: Set<Link> = []
    /// Links that lose every message in one direction only (the other still works): a replica
    /// suspected by one peer while it still reaches the others, so two leaders compete.
    var oneWayCuts: Set<Link> = []
    var crashed = 0
    var checker: ExecutionChecker
    /// What each acceptor promised and acknowledged, against what its disk kept.
    var acceptors: AcceptorChecker

    init(index: Int, config: PaxosConfig, execution: ExecutionConfig, extensionOrigin: UInt32?, digestIntervalSlots: UInt64,
         checkpointIntervalSlots: UInt64, disk: DiskProfile, seed: UInt64) {
        self.index = index
        self.config = config
        self.execution = execution
        self.extensionOrigin = extensionOrigin
        self.digestIntervalSlots = digestIntervalSlots
        self.checkpointIntervalSlots = checkpointIntervalSlots
        // Each disk draws its latencies and crash damage from its own stream of the seed.
        let disks = (0..<config.replicaCount).map { replica in
            SimulatedDisk(profile: disk, seed: seed ^ (0xD15C_0000_0000 + UInt64(index) << 16 + UInt64(replica)))
        }
        self.disks = disks
        gates = Array(repeating: EffectGate(), count: config.replicaCount)
        executionFreeAt = Array(repeating: .zero, count: config.replicaCount)
        survived = Array(repeating: nil, count: config.replicaCount)
        checker = ExecutionChecker(replicaCount: config.replicaCount)
        acceptors = AcceptorChecker(replicaCount: config.replicaCount, sublogCount: config.sublogCount)
        nodes = (0..<config.replicaCount).map { replica in
            var node = ReplicaNode(core: PaxosReplica(config: config, id: ReplicaID(replica), now: .zero), storage: disks[replica],
                                   digestIntervalSlots: digestIntervalSlots, execution: execution, extensionOrigin: extensionOrigin,
                                   checkpointIntervalSlots: checkpointIntervalSlots)
            // A parallel executor runs batches as scheduled events (a sequential one stays inline).
            node.executesInline = false
            return node
        }
    }

    var replicaCount: Int { config.replicaCount }

    func isCut(_ from: Int, _ to: Int) -> Bool { blocked.contains(Link(from, to)) || oneWayCuts.contains(Link(from, to)) }

    var hasSafetyViolation: Bool {
        !checker.violations.isEmpty || !acceptors.violations.isEmpty || nodes.contains { !($0?.core.invariantViolations.isEmpty ?? true) }
    }

    /// Every replica is up and has delivered every slot any replica delivered: the final state
    /// the acknowledged-write check reads.
    var hasConverged: Bool {
        nodes.allSatisfy { ($0?.core.deliveredBelow ?? 0) >= checker.deliveredBelowMax && $0 != nil && !$0!.isExecuting }
    }

    /// Crashes a replica: its memory and held effects are lost, its disk keeps what it synced
    /// (and maybe more, or a torn record). Returns the invariant violations it had noticed, the
    /// records the crash lost and the bytes of a torn write.
    mutating func crash(_ replica: Int) -> (violations: [String], lost: Int, tornBytes: Int?) {
        let node = nodes[replica]!
        let (recovered, lost, torn) = disks[replica].crash()
        survived[replica] = recovered
        nodes[replica] = nil
        skipsAheadOfPastLives += node.core.skipsAhead
        gates[replica] = EffectGate()
        crashed += 1
        return (node.core.invariantViolations, lost, torn)
    }

    /// Restarts a replica from its disk; returns how many records it restored and the slot of
    /// the checkpoint it started from.
    mutating func restart(_ replica: Int, now: Instant) -> (records: Int, checkpointSlot: UInt64) {
        let disk = disks[replica]
        let recovered = survived[replica]!
        survived[replica] = nil
        do {
            nodes[replica] = try ReplicaNode.recover(config: config, id: ReplicaID(replica), now: now, storage: disk, recovered: recovered,
                                                     digestIntervalSlots: digestIntervalSlots, execution: execution,
                                                     extensionOrigin: extensionOrigin, checkpointIntervalSlots: checkpointIntervalSlots)
        } catch {
            preconditionFailure("replica \(replica) wrote a checkpoint it cannot read back: \(error)")
        }
        nodes[replica]!.executesInline = false
        let slot = recovered.checkpoint?.slot ?? 0
        checker.restarted(replica: replica, fromSlot: slot)
        acceptors.restarted(replica, acceptor: nodes[replica]!.core.acceptorStateAtCheckpoint, checkpointSlot: slot)
        crashed -= 1
        return (recovered.records.count, slot)
    }

    mutating func partition(_ side: Set<Int>) {
        blocked = Link.cut(bySides: [side.sorted(), (0..<replicaCount).filter { !side.contains($0) }], replicas: replicaCount)
    }
}

struct StepKey: Hashable {
    var origin: Int
    var index: UInt64
}

enum EventKind {
    case tick(Int, Int)
    case message(Int, from: Int, to: Int, PaxosMessage)
    case request(Int, Int, Request)
    case reply(Int, Int, ClientReply)
    case extensionReply(Int, ClientReply)
    case clientWake(Int)
    case clientTick(Int)
    /// A crash, and why it was chosen (nil: at a random time).
    case crash(Int, Int, reason: String?)
    /// A disk operation of a replica's incarnation completes.
    case disk(Int, Int, Int, DiskCompletion)
    /// A replica's parallel executor finishes a job (it runs then, on the simulator's thread).
    case executed(Int, Int, ExecutionJob)
    case restart(Int, Int)
    case partition(Int, Set<Int>)
    case healPartition(Int)
    case cutLink(Int, Int, Int)
    case restoreLink(Int, Int, Int)
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
