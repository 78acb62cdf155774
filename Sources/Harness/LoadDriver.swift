import Composition
import DequeModule
import Foundation
import Linearizability
import NIOCore
import Primitives
import Runtime
import Services
import Storage
import Workload

/// Why a run could not be carried out.
public enum RunError: Error, CustomStringConvertible {
    case clusterUnavailable(String)

    public var description: String {
        switch self {
        case let .clusterUnavailable(reason): "the cluster did not come up: \(reason)"
        }
    }
}

/// What a finished run hands back.
public struct RunOutcome: Sendable {
    public var summary: RunSummary
    public var history: [HistoryOperation]
    /// With an extension: steps produced by the origin group, and how many reached the log.
    public var extensionSteps: (produced: Int, applied: Int)?
}

/// The load generator: client sessions on one event loop, driving a `LoadTarget`.
///
/// Closed loop: each client sends a request, waits for its reply, thinks, and sends the next.
/// Open loop: requests arrive at the target rate whatever happens to earlier ones; an arrival takes
/// a free client session, or waits for one. Latency always counts from the moment the request was
/// meant to be sent (closed loop: when it was sent; open loop: its scheduled arrival), so time a
/// request spends waiting behind a slow system is never hidden (no coordinated omission).
/// A request unanswered after the retry timeout is sent again to the next replica; its latency
/// still counts from its first intended send.
///
/// Each client is a shell over a `ProxyCore`, the request path the simulator's clients,
/// `CSMRClient` and `csmr proxy` share: it opens the client's session in every group, routes each
/// command with the composition's `Router`, numbers it, and retries it unchanged at the next
/// replica. In process, the driver also forwards an extension's steps to the log's group with an
/// `ExtensionForwarder` fed by every origin replica (over processes the replicas do it).
final class LoadDriver: @unchecked Sendable {
    // Everything below is touched only on `loop` (the unchecked Sendable rests on that).
    let spec: WorkloadSpec
    let loop: EventLoop
    let cluster: any LoadTarget
    /// Timed events resolved to group indices.
    private let events: [(group: Int, event: TimedEvent)]
    private var forwarder: ExtensionForwarder?
    private var random: SplitMix64
    private var systemRandom = SystemRandomNumberGenerator()
    private var keys: KeyGenerator
    private let values: ValueGenerator
    private let mix: MixPicker
    private let arrivals: ArrivalGenerator
    private let recordHistory: Bool
    private let progress: (@Sendable (String) -> Void)?
    /// Where the clients are: each sends first to its home replica, over links the target delays.
    private let placement: ClientPlacement?

    /// A client: its request path (sessions in every group, routing, retries), and the one
    /// command it has out.
    private struct Session {
        var core: ProxyCore
        /// The client's location (an index into `placement.locations`), if placed.
        var location: Int?
        /// The stage times of the reply being handled (the latency breakdown).
        var replyStages: ReplicaStages?
        var outstanding: Outstanding?
        /// A lock this client holds and must release after the hold time.
        var heldLock: String?
    }

    private struct Outstanding {
        var operation: ProxyCore.OperationID
        /// nil for the final read of the log.
        var kind: OperationKind?
        var command: Command
        var intendedNanoseconds: UInt64
        var historyIndex: Int?
        /// A read of the log after the run (see `FinalLogRead`), outside every measurement.
        var isFinalRead = false
        /// Sampled for the latency breakdown: sent flagged, answered with the replica's stages.
        var sampled = false
        /// When the command first left, and when it was last sent (a retry), for the breakdown.
        var sentNanoseconds: UInt64?
        var lastSendNanoseconds: UInt64 = 0
    }

    /// With a target whose replicas forward extension steps, a recorded history learns the steps
    /// from the log itself once the load is over: it reads the whole log, and each step found
    /// becomes the plain append it was, invoked with its put and complete by this read's reply
    /// (when it really happened lies in between), at the index the read found it at.
    private struct FinalLogRead {
        var session: Int
        var nextIndex: UInt64 = 0
        var entries: [(index: UInt64, entry: String)] = []
        var deadlineNanoseconds: UInt64
        /// When the run itself ended (the read takes no part in its measurements).
        var runEndedNanoseconds: UInt64
        var done = false
    }
    private var finalRead: FinalLogRead?
    /// How long the final read of the log may take.
    static let finalReadSeconds: UInt64 = 10

    private var sessions: [Session] = []
    /// Which client a reply is for: by nonce (session openings) and by group session.
    private var sessionByNonce: [ClientID: Int] = [:]
    private var sessionByClient: [GroupClient: Int] = [:]

    private struct GroupClient: Hashable {
        var group: Int
        var client: ClientID
    }
    private var freeSessions: [Int] = []
    private var backlog = Deque<(kind: OperationKind, intended: UInt64)>()
    private var recorder = LatencyRecorder()
    private var breakdown = BreakdownRecorder()
    /// Draws which requests are sampled; its own stream, so sampling leaves the workload's
    /// keys and values as they are without it.
    private var sampler: SplitMix64
    private var history: [HistoryOperation] = []
    private var logEnd: UInt64 = 0

    private var startNanoseconds: UInt64 = 0
    private var measureStart: UInt64 = 0
    private var measureEnd: UInt64 = 0
    private var nextArrival: UInt64 = 0
    private var issuedMeasured = 0
    /// Writes made so far; numbers each value so no two writes carry the same one.
    private var writesIssued: UInt64 = 0
    private var stoppedIssuing = false
    private var opened = 0
    private var finished = false
    private var promise: EventLoopPromise<RunOutcome>
    private var timers: [RepeatedTask] = []
    private var progressCount: UInt64 = 0
    private var progressLastCount: UInt64 = 0

    init(spec: WorkloadSpec, loop: EventLoop, cluster: any LoadTarget, events: [(group: Int, event: TimedEvent)], placement: ClientPlacement? = nil,
         recordHistory: Bool, progress: (@Sendable (String) -> Void)?) {
        self.spec = spec
        self.placement = placement
        recorder = placement.map { LatencyRecorder(locations: $0.locations) } ?? LatencyRecorder()
        self.loop = loop
        self.cluster = cluster
        self.events = events
        // A wide window: steps arrive at the rate of puts, and every step costs one decision in the
        // log's group.
        if let origin = cluster.router.extensionOrigin {
            forwarder = ExtensionForwarder(origin: UInt32(origin), windowSteps: 4_096, resendNanoseconds: 250_000_000)
        }
        random = SplitMix64(seed: spec.seed)
        sampler = SplitMix64(seed: spec.seed ^ 0x5A3F_1E0D_B7C2_9A41)
        keys = KeyGenerator(spec: spec.keys)
        values = ValueGenerator(spec: spec.values)
        mix = MixPicker(mix: spec.mix)
        arrivals = ArrivalGenerator(process: spec.clients.arrivals, rateOperationsPerSecond: spec.clients.rateOperationsPerSecond)
        self.recordHistory = recordHistory
        self.progress = progress
        recorder.keepsSecondHistograms = spec.keepsSecondHistograms
        promise = loop.makePromise(of: RunOutcome.self)
    }

    /// The loop's clock, never the system's directly: a real loop's is the monotonic clock, an
    /// `EmbeddedEventLoop`'s is virtual time, so a run against a synthetic target replays
    /// exactly (`WorkloadRunner.runSynthetic`) and open-loop accounting is tested to the request.
    private func now() -> UInt64 { loop.now.uptimeNanoseconds }

    /// How long every client may take to open its sessions before the run is given up.
    static let sessionOpenSeconds: Int64 = 30

    /// Opens every client's sessions in every group, then runs the load; the future completes
    /// when the run is over.
    func run() -> EventLoopFuture<RunOutcome> {
        loop.execute { [self] in
            let groups = cluster.groupCount
            let now = now()
            for index in 0..<spec.clients.count {
                // From the system's randomness, not the workload's seed: two harness processes
                // running one workload must not share nonces (the proposer de-duplicates on
                // nonce and sequence), and nothing measured depends on their values.
                let nonce = ClientID.nonce(using: &systemRandom)
                // A placed client starts at its home replica; others are spread over the replicas.
                let location = placement?.location(ofClient: index)
                let firstReplicas = (0..<groups).map { group in
                    location.map { placement!.homeReplica(location: $0, group: group) } ?? index % cluster.replicaCount(of: group)
                }
                let config = ProxyCore.Config(replicaCounts: (0..<groups).map { cluster.replicaCount(of: $0) },
                                              firstReplicas: firstReplicas,
                                              retryTimeoutNanoseconds: max(1, spec.clients.retryTimeoutMilliseconds * 1_000_000))
                sessions.append(Session(core: ProxyCore(nonce: nonce, router: cluster.router, config: config), location: location))
                sessionByNonce[nonce] = index
                carryOut(sessions[index].core.openSessions(nowNanoseconds: now), session: index)
            }
            timers.append(loop.scheduleRepeatedTask(initialDelay: .milliseconds(50), delay: .milliseconds(50)) { [self] _ in retryOverdue() })
            // A cluster that never comes up (a replica that cannot open its disk, say) must end
            // the run with the reason, not hang it.
            loop.scheduleTask(in: .seconds(Self.sessionOpenSeconds)) { [self] in
                guard startNanoseconds == 0, !finished else { return }
                finished = true
                for timer in timers { timer.cancel() }
                let events = recorder.events.values.flatMap { $0 }.prefix(5)
                promise.fail(RunError.clusterUnavailable(
                    "only \(opened) of \(sessions.count) client sessions opened within \(Self.sessionOpenSeconds) s"
                        + (events.isEmpty ? "" : "; the cluster reported: " + events.joined(separator: "; "))))
            }
            if forwarder != nil {
                timers.append(loop.scheduleRepeatedTask(initialDelay: .milliseconds(2), delay: .milliseconds(2)) { [self] _ in forwardExtensionSteps() })
            }
        }
        return promise.futureResult
    }

    /// Carries out a client's `ProxyCore` directives.
    private func carryOut(_ directives: [ProxyCore.Directive], session index: Int) {
        for directive in directives {
            switch directive {
            case let .send(request, group, replica):
                // A finished run sends nothing more: its target may already be stopped and its
                // loops shut down (a late think-time or lock-release timer would otherwise send).
                guard !finished else { continue }
                // The outstanding command's sends (not a session opening) are timed for the
                // breakdown: its first send, and its last (the retry that gets answered).
                var sampled = false
                if var outstanding = sessions[index].outstanding, request.command == outstanding.command {
                    let now = now()
                    if outstanding.sentNanoseconds == nil { outstanding.sentNanoseconds = now }
                    outstanding.lastSendNanoseconds = now
                    sampled = outstanding.sampled
                    sessions[index].outstanding = outstanding
                }
                cluster.submit(request, group: group, replica: replica, fromLocation: sessions[index].location ?? 0, sampled: sampled)
            case let .completed(operation, request, reply):
                completed(operation, request: request, reply: reply, session: index)
            case let .failed(operation, command, failure):
                // No deadlines are set and one command at a time never fills a queue.
                preconditionFailure("\(command) (\(operation)) failed: \(failure); the load driver sets no deadline and queues one command")
            }
        }
    }

    /// Called from any replica's loop.
    func deliver(_ reply: ClientReply, group: Int) {
        loop.execute { [self] in receive(reply, group: group) }
    }

    /// Something the target reports (a state transfer, a storage failure), from any loop: an
    /// event in the time series, and a progress line.
    func event(_ text: String) {
        loop.execute { [self] in
            recorder.recordEvent(text, second: second(of: now()))
            progress?(text)
        }
    }

    /// Extension steps from the origin group's replicas (any loop).
    func extensionSteps(_ steps: [(index: UInt64, entry: String)]) {
        loop.execute { [self] in
            for step in steps { forwarder?.produced(index: step.index, entry: step.entry) }
        }
    }

    /// Per extension step: when first sent, and (from the log's replicas) where and when it landed,
    /// so recorded histories show the log as it really is.
    private var extensionFirstSent: [UInt64: UInt64] = [:]
    private var extensionAppended: [UInt64: (logIndex: UInt64, nanoseconds: UInt64)] = [:]

    /// Appends reported by the log group's replicas (any loop).
    func extensionsAppended(_ appended: [(origin: UInt32, index: UInt64, logIndex: UInt64)]) {
        guard recordHistory else { return }
        let now = now()
        loop.execute { [self] in
            for step in appended where extensionAppended[step.index] == nil { extensionAppended[step.index] = (step.logIndex, now) }
        }
    }

    private func forwardExtensionSteps() {
        guard var forwarder, let target = cluster.router.extensionTarget else { return }
        let now = now()
        let requests = forwarder.due(nowNanoseconds: now)
        self.forwarder = forwarder
        guard !requests.isEmpty else { return }
        // One replica keeps the steps in order in its proposals; after a resend (no progress)
        // the next replica takes over, so a crashed one is not relied on.
        let replica = forwarder.resends % cluster.replicaCount(of: target)
        for request in requests {
            if recordHistory, extensionFirstSent[request.sequence] == nil { extensionFirstSent[request.sequence] = now }
            cluster.submit(request, group: target, replica: replica)
        }
    }

    /// The extension steps as the plain appends they became, for `history.jsonl`.
    private func extensionHistory() -> [HistoryOperation] {
        forwarder?.appendHistory(appended: extensionAppended, firstSent: extensionFirstSent) ?? []
    }

    // MARK: Phases

    private func beginLoad() {
        startNanoseconds = now()
        measureStart = startNanoseconds + UInt64(spec.warmupSeconds * 1e9)
        measureEnd = measureStart + UInt64(spec.durationSeconds * 1e9)
        if spec.operations != nil { measureEnd = UInt64.max }
        for (group, event) in events {
            let delay = Int64(event.atSeconds * 1e9)
            loop.scheduleTask(in: .nanoseconds(delay)) { [self] in apply(event, group: group) }
        }
        timers.append(loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in reportProgress() })
        sampleResources()
        timers.append(loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { [self] _ in sampleResources() })
        if spec.operations == nil {
            loop.scheduleTask(deadline: .uptimeNanoseconds(measureStart)) { [self] in storageAtWindowStart = cluster.storageStats }
            loop.scheduleTask(deadline: .uptimeNanoseconds(measureEnd)) { [self] in storageAtWindowEnd = cluster.storageStats }
        } else {
            storageAtWindowStart = cluster.storageStats
        }
        switch spec.clients.loop {
        case .closed:
            for index in sessions.indices { issue(kindFor: index, session: index, intended: startNanoseconds) }
        case .open:
            freeSessions = Array(sessions.indices.reversed())
            nextArrival = startNanoseconds
            pumpArrivals()
        }
    }

    private func apply(_ event: TimedEvent, group index: Int) {
        cluster.inject(event.action, group: index)
        recorder.recordEvent(event.label, second: second(of: now()))
    }

    private func second(of nanoseconds: UInt64) -> Int { Int((nanoseconds &- startNanoseconds) / 1_000_000_000) }

    private func isMeasured(_ intended: UInt64) -> Bool { intended >= measureStart && intended < measureEnd }

    /// Whether a reply arriving at `now` counts toward achieved throughput.
    private func completesInWindow(_ now: UInt64) -> Bool { now >= measureStart && now < measureEnd }

    /// Whether a request meant for `intended` should still be sent.
    private func mayIssue(_ intended: UInt64) -> Bool {
        if stoppedIssuing { return false }
        if let operations = spec.operations, issuedMeasured >= operations { return false }
        return intended < measureEnd
    }

    private func pumpArrivals() {
        let now = now()
        while nextArrival <= now {
            guard mayIssue(nextArrival) else {
                stopIssuing()
                return
            }
            let kind = mix.next(&random)
            if let session = freeSessions.popLast() {
                issue(kind, session: session, intended: nextArrival)
            } else {
                backlog.append((kind, nextArrival))
            }
            nextArrival += arrivals.nextGapNanoseconds(&random)
        }
        loop.scheduleTask(deadline: .uptimeNanoseconds(nextArrival)) { [self] in pumpArrivals() }
    }

    private func issue(kindFor session: Int, session index: Int, intended: UInt64) {
        guard mayIssue(intended) else {
            stopIssuing()
            return
        }
        issue(mix.next(&random), session: index, intended: intended)
    }

    private func issue(_ kind: OperationKind, session index: Int, intended: UInt64) {
        let command = makeCommand(kind, session: index)
        send(command, kind: kind, session: index, intended: intended)
    }

    private func send(_ command: Command, kind: OperationKind, session index: Int, intended: UInt64) {
        // Every request sent counts as offered, lock releases included.
        if isMeasured(intended) { issuedMeasured += 1 }
        recorder.recordIntended(kind, second: second(of: intended), measured: isMeasured(intended), location: sessions[index].location)
        submit(command, kind: kind, session: index, intended: intended)
    }

    /// Hands a command to the client's core and records its invocation in the history (under the
    /// group session it was sent in, corrected on completion if the session changed meanwhile).
    private func submit(_ command: Command, kind: OperationKind?, session index: Int, intended: UInt64, isFinalRead: Bool = false) {
        let now = now()
        let submission = sessions[index].core.submit(command, nowNanoseconds: now)
        var historyIndex: Int?
        if recordHistory || isFinalRead {
            let client = sessions[index].core.request(of: submission.operation)?.client ?? sessions[index].core.nonce
            history.append(HistoryOperation(client: client, command: command, invokeNanoseconds: now, completion: nil))
            historyIndex = history.count - 1
        }
        let sampled = !isFinalRead && spec.breakdownSampleRate > 0 && sampler.chance(spec.breakdownSampleRate)
        sessions[index].outstanding = Outstanding(operation: submission.operation, kind: kind, command: command, intendedNanoseconds: intended,
                                                  historyIndex: historyIndex, isFinalRead: isFinalRead, sampled: sampled)
        carryOut(submission.directives, session: index)
    }

    /// A key by the distribution, or, for `keys.conflict_rate` of the commands, the shared key.
    private func nextKey() -> String {
        if spec.keys.conflictRate > 0, random.chance(spec.keys.conflictRate) { return "shared" }
        return KeyGenerator.key(keys.next(&random))
    }

    /// Every value written is unique to its writer and request (see `ValueGenerator.unique`).
    private func uniqueValue(session index: Int) -> String {
        writesIssued += 1
        return values.unique(client: sessions[index].core.nonce.rawValue, sequence: writesIssued, &random)
    }

    private func makeCommand(_ kind: OperationKind, session index: Int) -> Command {
        switch kind {
        case .kvGet: return .kvGet(key: nextKey())
        case .kvPut: return .kvPut(key: nextKey(), value: uniqueValue(session: index))
        case .lockAcquire: return .lockAcquire(name: "lock-\(nextKey())")
        case .lockRelease: return .lockRelease(name: sessions[index].heldLock ?? "lock-none")
        case .logAppend: return .logAppend(entry: uniqueValue(session: index))
        case .logRetrieve:
            let length = UInt64(spec.retrieveLength)
            let last = logEnd == 0 ? 0 : logEnd - 1
            return .logRetrieve(first: last >= length - 1 ? last - (length - 1) : 0, last: last)
        case .logTruncate:
            let keep = UInt64(spec.truncateKeepEntries)
            return .logTruncate(index: logEnd > keep ? logEnd - keep : 0)
        }
    }

    private func receive(_ reply: ClientReply, group: Int) {
        if let origin = forwarder?.origin, reply.client == ExtensionForwarder.client(origin: origin) {
            forwarder?.acknowledged(reply.reply)
            finishIfDrained()
            return
        }
        guard let index = sessionByClient[GroupClient(group: group, client: reply.client)] ?? sessionByNonce[reply.client] else { return }
        // Only a session's opening can complete a client's sessions, and reading the core's state
        // through the array copies the whole core: read it for those replies only.
        let opensSession = if case .session = reply.reply { true } else { false }
        let wasOpen = opensSession ? sessions[index].core.sessionsOpen : true
        // The core passes on the reply, not its stage times: keep them for `completed`.
        sessions[index].replyStages = reply.stages
        let directives = sessions[index].core.receive(reply, group: group, nowNanoseconds: now())
        if case let .session(id) = reply.reply, sessions[index].core.session(ofGroup: group) == id {
            sessionByClient[GroupClient(group: group, client: id)] = index
            if !wasOpen, sessions[index].core.sessionsOpen, startNanoseconds == 0 {
                // Every group's session of this client is open; the load starts once all are.
                opened += 1
                if opened == sessions.count { beginLoad() }
            }
        }
        carryOut(directives, session: index)
    }

    /// A client's command was answered.
    private func completed(_ operation: ProxyCore.OperationID, request: Request, reply: Reply, session index: Int) {
        guard let outstanding = sessions[index].outstanding, outstanding.operation == operation else { return }
        let now = now()
        sessions[index].outstanding = nil
        if let historyIndex = outstanding.historyIndex { history[historyIndex].client = request.client }
        if outstanding.isFinalRead {
            finalReadAnswered(reply, outstanding: outstanding, now: now)
            return
        }
        guard let kind = outstanding.kind else { return }
        let stages = sessions[index].replyStages
        let reply = ClientReply(client: request.client, sequence: request.sequence, reply: reply)
        // A command whose outcome the target cannot tell stays pending in the history: it may
        // take effect at any point after its invocation, or never.
        if let historyIndex = outstanding.historyIndex, reply.reply != .failure(.outcomeUnknown) {
            history[historyIndex].completion = HistoryOperation.Completion(nanoseconds: now, reply: reply.reply)
        }
        let latency = (now &- outstanding.intendedNanoseconds) / 1_000
        switch reply.reply {
        case .failure(.sessionExpired), .failure(.staleSequence), .failure(.outcomeUnknown):
            if isMeasured(outstanding.intendedNanoseconds) { recorder.recordError(kind, location: sessions[index].location) }
        default:
            recorder.record(kind, latencyMicroseconds: latency, second: second(of: now), measured: isMeasured(outstanding.intendedNanoseconds),
                            completedInWindow: completesInWindow(now), location: sessions[index].location)
            if outstanding.sampled, let stages, let sent = outstanding.sentNanoseconds, isMeasured(outstanding.intendedNanoseconds) {
                breakdown.record(kind, stages: BreakdownRecorder.stages(intendedNanoseconds: outstanding.intendedNanoseconds,
                                                                        firstSentNanoseconds: sent,
                                                                        answeredSendNanoseconds: outstanding.lastSendNanoseconds,
                                                                        repliedNanoseconds: now, replica: stages),
                                 endToEndNanoseconds: now &- outstanding.intendedNanoseconds)
            }
            progressCount += 1
        }
        switch reply.reply {
        case let .index(index): logEnd = max(logEnd, index + 1)
        case let .entries(first, entries): logEnd = max(logEnd, first + UInt64(entries.count))
        default: break
        }
        // A granted lock is held, then released by the same client: the release is its own
        // operation, meant to be sent when the hold time ends.
        if kind == .lockAcquire, reply.reply == .flag(true), case let .lockAcquire(name) = outstanding.command {
            sessions[index].heldLock = name
            let releaseAt = now + spec.lockHoldMicroseconds * 1_000
            loop.scheduleTask(deadline: .uptimeNanoseconds(releaseAt)) { [self] in
                send(.lockRelease(name: name), kind: .lockRelease, session: index, intended: releaseAt)
            }
            return
        }
        if kind == .lockRelease { sessions[index].heldLock = nil }
        sessionFree(index, now: now)
    }

    private func sessionFree(_ index: Int, now: UInt64) {
        switch spec.clients.loop {
        case .closed:
            let next = now + spec.clients.thinkMicroseconds * 1_000
            if spec.clients.thinkMicroseconds == 0 {
                issue(kindFor: index, session: index, intended: next)
            } else {
                loop.scheduleTask(deadline: .uptimeNanoseconds(next)) { [self] in issue(kindFor: index, session: index, intended: next) }
            }
        case .open:
            if let waiting = backlog.popFirst() {
                issue(waiting.kind, session: index, intended: waiting.intended)
            } else {
                freeSessions.append(index)
            }
        }
        finishIfDrained()
    }

    private func retryOverdue() {
        let now = now()
        for index in sessions.indices where sessions[index].core.nextDeadlineNanoseconds.map({ $0 <= now }) ?? false {
            carryOut(sessions[index].core.tick(nowNanoseconds: now), session: index)
        }
        // A closed loop whose clients are all stuck would never reach `mayIssue` again.
        if now >= measureEnd, startNanoseconds > 0 { stopIssuing() }
        if stoppedIssuing, let drainDeadline, now >= drainDeadline { finish() }
    }

    private var drainDeadline: UInt64?

    private func stopIssuing() {
        guard !stoppedIssuing else { return }
        stoppedIssuing = true
        // Requests still out (and, open loop, arrivals still waiting for a session) get
        // `drain_s`; those without a reply by then are counted as unfinished.
        drainDeadline = max(now(), measureEnd == .max ? now() : measureEnd) + UInt64(spec.drainSeconds * 1e9)
        finishIfDrained()
    }

    private func finishIfDrained() {
        guard stoppedIssuing, !finished else { return }
        if sessions.allSatisfy({ $0.outstanding == nil }), backlog.isEmpty, forwarder?.isDrained ?? true { finish() }
    }

    /// Starts the final read of the log (see `FinalLogRead`) if the run needs one; false when it
    /// does not, or it is over.
    private func finalReadPending() -> Bool {
        guard recordHistory, cluster.forwardsExtensionStepsItself else { return false }
        let now = now()
        if let read = finalRead { return !read.done && now < read.deadlineNanoseconds }
        // A session with nothing out reads; one that still waits keeps its request counted.
        guard let session = sessions.indices.first(where: { sessions[$0].outstanding == nil && sessions[$0].heldLock == nil }) else {
            recorder.recordEvent("the log could not be read for the extension's steps: every client session is busy", second: second(of: now))
            return false
        }
        finalRead = FinalLogRead(session: session,
                                 deadlineNanoseconds: now + Self.finalReadSeconds * 1_000_000_000, runEndedNanoseconds: now)
        readLogOnward()
        return true
    }

    private func readLogOnward() {
        guard let read = finalRead else { return }
        sendFinalRead(.logRetrieve(first: read.nextIndex, last: read.nextIndex + ServiceLimits().retrieveEntriesMax - 1))
    }

    /// A reply to the final read: more of the log, or its end.
    private func finalReadAnswered(_ reply: Reply, outstanding: Outstanding, now: UInt64) {
        guard var read = finalRead, let historyIndex = outstanding.historyIndex else { return }
        history[historyIndex].completion = HistoryOperation.Completion(nanoseconds: now, reply: reply)
        switch reply {
        case let .entries(first, entries) where !entries.isEmpty:
            for (offset, entry) in entries.enumerated() { read.entries.append((first + UInt64(offset), entry)) }
            read.nextIndex = first + UInt64(entries.count)
        case let .failure(.outOfRange(first, _, available)) where first < available.upperBound:
            // Past the end: read what is left, or from the head if the front was truncated.
            read.nextIndex = max(first, available.lowerBound)
            if available.upperBound > read.nextIndex {
                finalRead = read
                let last = min(available.upperBound - 1, read.nextIndex + ServiceLimits().retrieveEntriesMax - 1)
                sendFinalRead(.logRetrieve(first: read.nextIndex, last: last))
                return
            }
            read.done = true
        default:
            read.done = true
        }
        if read.done, extensionStepsIn(read) < acknowledgedPuts, now < read.deadlineNanoseconds {
            // The replicas forward steps on their own time: wait for the acknowledged puts' steps,
            // then read on from where the log ended.
            read.done = false
            finalRead = read
            loop.scheduleTask(in: .milliseconds(100)) { [self] in readLogOnward() }
            return
        }
        finalRead = read
        if read.done {
            finish()
        } else {
            readLogOnward()
        }
    }

    private func extensionStepsIn(_ read: FinalLogRead) -> Int { read.entries.count { ExtensionStep.parse($0.entry) != nil } }

    /// Puts the history shows acknowledged: each has its step in the log once the replicas caught up.
    private var acknowledgedPuts: Int {
        history.count { operation in
            guard case .kvPut = operation.command, let reply = operation.completion?.reply else { return false }
            if case .failure = reply { return false }
            return true
        }
    }

    private func sendFinalRead(_ command: Command) {
        guard let read = finalRead else { return }
        submit(command, kind: nil, session: read.session, intended: now(), isFinalRead: true)
    }

    /// The extension steps the final read found, as the appends they were.
    private func extensionHistoryFromLog() -> [HistoryOperation] {
        guard let read = finalRead, let completed = read.entries.isEmpty ? nil : history.last(where: { $0.completion != nil })?.completion else { return [] }
        var putInvoked: [String: UInt64] = [:]
        for operation in history {
            if case let .kvPut(key, value) = operation.command { putInvoked["\(key)=\(value)", default: operation.invokeNanoseconds] = operation.invokeNanoseconds }
        }
        return read.entries.compactMap { found in
            guard let step = ExtensionStep.parse(found.entry) else { return nil }
            let invoked = min(putInvoked["\(step.key)=\(step.value)"] ?? 0, completed.nanoseconds)
            return HistoryOperation(client: ExtensionForwarder.client(origin: step.origin), command: .logAppend(entry: found.entry),
                                    invokeNanoseconds: invoked, completion: .init(nanoseconds: completed.nanoseconds, reply: .index(found.index)))
        }
    }

    /// How many extension steps the final read found in the log.
    private var extensionStepsFound: Int? {
        finalRead.map(extensionStepsIn)
    }

    private func finish() {
        guard !finished else { return }
        if finalReadPending() { return }
        finished = true
        for timer in timers { timer.cancel() }
        for session in sessions {
            guard let outstanding = session.outstanding, let kind = outstanding.kind else { continue }
            if isMeasured(outstanding.intendedNanoseconds) { recorder.recordUnfinished(kind, location: session.location) }
        }
        for waiting in backlog {
            // Never sent, so never offered yet: they count now, at their intended second (with no
            // location: no client took them).
            recorder.recordIntended(waiting.kind, second: second(of: waiting.intended), measured: isMeasured(waiting.intended))
            if isMeasured(waiting.intended) { recorder.recordUnfinished(waiting.kind) }
        }
        let end = min(measureEnd, finalRead?.runEndedNanoseconds ?? now())
        let measuredSeconds = Double(end &- measureStart) / 1e9
        var summary = RunSummary(spec: spec, recorder: recorder, measuredSeconds: measuredSeconds)
        summary.breakdown = breakdown
        if let first = storageAtWindowStart, let last = storageAtWindowEnd ?? cluster.storageStats {
            summary.storage = StorageSummary(mode: spec.group.durability, start: first, end: last, seconds: measuredSeconds,
                                             replicas: spec.group.replicas)
        }
        var steps = forwarder.map { ($0.steps.count, Int($0.applied)) }
        if let found = extensionStepsFound { steps = (found, found) }
        promise.succeed(RunOutcome(summary: summary, history: history + extensionHistory() + extensionHistoryFromLog(), extensionSteps: steps))
    }

    private var storageAtWindowStart: WALStats?
    private var storageAtWindowEnd: WALStats?

    /// Resident memory and the storage's counters, once a second (`resources.csv`).
    private func sampleResources() {
        let stats = cluster.storageStats
        recorder.recordResources(ResourceSample(second: second(of: now()), residentBytes: ResourceSample.residentBytes(),
                                                syncs: stats?.syncs ?? 0, recordsSynced: stats?.recordsSynced ?? 0))
    }

    private func reportProgress() {
        guard let progress else { return }
        let now = now()
        let elapsed = Double(now &- startNanoseconds) / 1e9
        let rate = progressCount - progressLastCount
        progressLastCount = progressCount
        let all = recorder.all
        let p99 = all.totalCount > 0 ? "\(all.valueAtPercentile(99)) µs" : "-"
        let phase = now < measureStart ? "warm-up" : (stoppedIssuing ? "draining" : "measuring")
        progress(String(format: "[%6.1f s] %@ %8d ops/s  p99 so far %@", elapsed, phase, Int(rate), p99))
    }
}
