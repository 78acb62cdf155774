import Primitives
import Services

/// One replica of a Paxos group: acceptor, learner and proposer in one pure value.
///
/// Protocol. Slots are split into sublogs: slot s belongs to sublog s mod k, where k is the number
/// of replicas in multi-leader mode (Mencius: every replica leads its own sublog) and 1 in
/// single-leader mode (classic Multi-Paxos). Each sublog runs Multi-Paxos of its own: one promise
/// per sublog at each acceptor, one leader at a time chosen by ballots. The initial leader of a
/// sublog owns round 0 and skips phase 1 on a fresh start; any other leader, and the initial one
/// after a restart, wins phase 1 over every slot from its first undelivered one. Decided slots are
/// delivered in global slot order without gaps.
///
/// A leader proposes batches (bounded by commands, bytes and a delay) and keeps at most
/// `pipelineDepthMax` batches in flight. A leader with nothing to propose skips: when it learns of
/// a higher slot elsewhere, it gives up all its unused slots below it at once, so an idle leader
/// never stalls the others. When a sublog's leader is suspected, the lowest-numbered unsuspected
/// replica revokes it: phase 1 with a higher ballot, then the values found, no-ops for the rest,
/// and no-op runs from then on. An owner that is alive again regains its sublog the same way.
///
/// An owner's skips cost no round (Mencius, rule 2 and its "skip learned from the owner"). In
/// multi-leader mode, the owner r leading its own sublog at one of its ballots (k, r) (round 0 from
/// the start, or a higher round won by phase 1 after it was revoked or restarted) skips by
/// persisting the run as accepted at (k, r), learning it decided itself and sending the run as
/// decided to the others, who learn it at once: no accept, no quorum. Why that is safe:
///
/// - Claim: if the owner r skips slot s at ballot (k, r), then every value any acceptor ever
///   accepts in s, at any ballot, is a no-op; so no-op is the only value that can be decided in s,
///   and learning it early agrees with whatever a quorum decides there.
/// - Ballot (k, r) belongs to r alone, and r uses it in one incarnation only: a restarted replica
///   leads nothing until it wins phase 1 with a round above every ballot it promised. In that
///   incarnation r gives each slot one value at (k, r) (`nextSlot` only grows): s got the skip and
///   no batch. When k > 0, s lies above every slot reported in r's phase 1 (those all got
///   proposals) and above `ownSlotsUsedBelow`.
/// - Any leader proposes in s only (a) a value reported in its phase 1, which by induction on
///   ballots is a no-op; (b) a no-op, for a slot nobody reported; (c) a client batch, which in
///   multi-leader mode only r, the owner, ever proposes in r's sublog (a revoker proposes found
///   values and no-ops, never its clients' requests, which go to its own sublog), and only at slots
///   at or above `ownSlotsUsedBelow`: one past every slot r proposed in or skipped at any of its
///   ballots. That floor survives restarts because r persists its proposals and skips (as
///   `.accepted` at its ballot) before anything reveals them, and `init(restoring:)` rebuilds the
///   floor from those records; within an incarnation it is taken from r's leadership of its sublog
///   when r drops it. After winning phase 1, r fills its slots below the floor with no-ops (a quorum
///   round) before any batch or skip. So no batch is ever accepted in s, at a ballot below (k, r)
///   or above it.
/// - Revocation, both ways: a revoker never decides a batch in a slot r skipped ((a)–(c)), and r
///   never skips a slot in which a revoker decided a batch, since such a batch can only be r's own
///   round-0 proposal found in phase 1, and r skips only slots it never proposed in. A skip r makes
///   while partitioned from a revoker is a no-op where the revoker can only put no-ops.
/// - Single-leader mode keeps quorum no-op runs: there, a leader that took over proposes client
///   batches in sublog 0 above whatever it found, which would break (c). So does a revoker in
///   another owner's sublog (its skips are not the owner's).
/// - Like every Paxos guarantee here, this rests on a replica's records surviving its crash: a
///   replica rebuilt with an empty disk would lead at round 0 again and must not rejoin under its
///   old identity.
///
/// Learning in a group of three. A leader accepts its own proposal in the `Ready` that carries the
/// accepts (so its acceptance is persisted before a peer can see the proposal); an acceptor of a
/// group of three that accepts a proposal from the proposer itself therefore knows that a quorum
/// (the proposer and itself) accepted it at that ballot, and learns it at once. The leader sends
/// no decision: the acceptor that has not acknowledged learns the value when the accept reaches
/// it, and one whose accept was lost or refused catches up (heartbeats carry the batch horizon).
/// Learning is not safety: a replica that never learns a slot only waits. A slot that waits for another
/// leader's batch is thus delivered one hop after that batch's accept instead of three. Should the
/// leader's own acceptor refuse its proposal (the leadership is stale), nothing is sent and the
/// leadership is given up. Larger groups learn from the leader's decision as before.
///
/// Skips travel with acknowledgements. An owner that skips because an accept told it of a higher
/// batch answers that accept with one message, `.accepted` carrying the skipped runs (Mencius'
/// piggybacking); the other peers get the runs as `.decided`. Rule 2 reacts to `batchHorizon`, the
/// highest slot known to hold a client batch, not to every slot seen: slots above the last batch
/// hold nothing anyone waits for.
///
/// Skipping ahead (multi-leader, `skipAheadPercent`). Reacting to accepts, an owner far from the
/// others closes its slots below a peer's batch only after that batch's accept reached it, and its
/// skip is back a full round trip after the batch was proposed: the delayed commit of Mencius,
/// which makes a slot wait for the round trip to the owner that lags in slot numbers, the remotest
/// one. So each owner also skips, without a round, on every tick, up to the last batch slot it knows
/// plus the slots the group opens during one one-way delay to its nearest live peer (the group's
/// batch rate times the stride, an upper bound of how fast slot numbers grow, over half the
/// measured round trip; `planSkipAhead` says why these). A peer's slot then waits for a remote
/// owner's skip about a one-way delay, mostly hidden behind its own quorum's round trip, instead of
/// a round trip to that owner. Safety needs nothing new: a skip ahead is an owner's skip like any
/// other, of slots the owner never proposed in, persisted before it is revealed (the argument
/// above holds for any slot the owner skips, not only those below a slot it heard of), and its
/// later batches go above the skipped slots, as after any skip. What it costs is slot numbers
/// (at most a sixteenth of the delivery window per skip) and a decided message per tick while the
/// estimate moves. Round trips are the minimum of the last few heartbeat echoes (queueing is not a
/// delay a skip can hide), and nothing is skipped ahead while the nearest one-way delay is under
/// two ticks: there the skips that answer accepts are as early, and skips moving a tick at a time
/// would overshoot.
///
/// Deviations from Mencius, and why. (1) A revoker's skips in a sublog it took over travel as
/// accepts of no-op runs decided by a quorum: only the owner can vouch that it proposed nothing
/// there. (Skipping without a round at the owner's later ballots too matters in practice: a false
/// suspicion at start-up, once it cost an owner round 0, used to make every later skip of that
/// owner an accept round.) (2)
/// Accepted state is kept until the durability layer compacts it, so a restarted replica catches up
/// from its peers' decided slots. (3) No slot is proposed more than `deliveryWindowSlotsMax` beyond
/// the first undelivered slot, which bounds what piles up while a slot waits for revocation.
///
/// Every input returns a `Ready`: records to persist, then messages to send, and deliveries.
public struct PaxosReplica: Sendable {
    public let config: PaxosConfig
    public let id: ReplicaID
    private let stride: UInt64
    private let allReplicas: [ReplicaID]

    // MARK: Acceptor state (persisted)

    /// Highest ballot promised, per sublog.
    private var promised: [Ballot]
    /// What this replica accepted or learned, per slot.
    private var slots = SlotTable()

    // MARK: Learner state

    /// The first slot not delivered yet; every slot below it has been delivered, in order.
    public private(set) var deliveredBelow: UInt64 = 0
    /// Slots below this are covered by a checkpoint and forgotten: this replica can neither report
    /// them in phase 1 nor send them to a peer that catches up (it offers its checkpoint instead).
    public private(set) var compactedBelow: UInt64 = 0
    /// One past the highest slot this replica has seen proposed or decided anywhere.
    public private(set) var horizon: UInt64 = 0
    /// One past the highest slot this replica knows to hold a client batch. In multi-leader mode an
    /// owner closes its unused slots below this one (rule 2), not below `horizon`: slots above the
    /// last batch hold nothing anyone waits for, and reacting to another owner's skip ahead would
    /// pass every skip ahead round the group.
    public private(set) var batchHorizon: UInt64 = 0
    private var lastDeliveryAt: Instant

    // MARK: Proposer state

    private var leaderships: [Int: Leadership] = [:]
    /// Highest ballot seen per sublog; its replica is the presumed leader.
    private var knownBallot: [Ballot]
    private var queue: [Request] = []
    private var queueHead = 0
    private var queueBytes = 0
    private var oldestQueuedAt: Instant?
    private var pendingRequests: Set<RequestKey> = []
    private var lastPrepareAt: [Int: Instant] = [:]
    /// Requests this replica passed on to a presumed leader, and when (bounded: see
    /// `forwardedRecently`).
    private var forwardedAt: [RequestKey: Instant] = [:]
    /// Single-leader: the replica this one takes for the leader forwarded it a request, so it
    /// does not lead; this replica calls an election (see `electLeaders`).
    private var presumedLeaderForwards = false
    /// One past the highest slot of its own sublog this replica proposed in or skipped at any of its
    /// ballots (see `raisesOwnFloor`), in this incarnation or (from its records) an earlier one. When it leads its sublog again at
    /// a higher ballot, client batches go at or above it; below it, only no-ops (see the header).
    private var ownSlotsUsedBelow: UInt64 = 0

    // MARK: Skipping ahead (multi-leader; see the header)

    /// The last few round trips to each peer in µs, timed by heartbeat echoes on this replica's
    /// clock (empty until an echo came back). Their minimum is the link's delay; the rest is
    /// queueing, which a skip ahead cannot hide.
    private var roundTripSamples: [[UInt64]]
    private static let roundTripSamplesMax = 8
    /// The gap between ticks in µs, smoothed: skips ahead move a tick at a time.
    private var tickIntervalMicroseconds: UInt64?
    private var lastTickAt: Instant?
    /// Client batches proposed in each sublog (this replica's own, and peers' seen in their
    /// accepts), and the counts at the last rate sample.
    private var batchesSeen: [UInt64]
    private var batchesAtSample: [UInt64]
    private var rateSampledAt: Instant
    /// Client batches per second proposed in each sublog, smoothed.
    private var batchesPerSecond: [Double]
    /// This replica, leading its own sublog, skips its unused slots below this one.
    private var skipAheadBelow: UInt64 = 0

    /// Acceptances peers reported for slots this replica has not learned (answers to its
    /// catch-ups), per slot at the highest ballot reported: a quorum at one ballot decides the slot.
    private var reportedAcceptances: [UInt64: (ballot: Ballot, value: SlotValue, acceptors: Set<ReplicaID>)] = [:]

    // MARK: Within one input

    /// The acknowledgement owed to the proposer of an accept this input took, sent at the end of
    /// the input with the skips the accept set off (Mencius: skips piggybacked on accept replies).
    private var owedAcknowledgement: (to: ReplicaID, ballot: Ballot, first: UInt64)?
    /// Runs this owner skipped (without a round) during the input.
    private var skipsThisInput: [SlotRun] = []

    // MARK: Failure detection

    private var lastHeard: [Instant]
    private var lastHeartbeatAt: Instant
    private var lastCatchUpAt: Instant
    private var catchUpCursor = 0

    private var now: Instant

    /// Skip runs this replica sent reaching above every batch it knew of (skips ahead), for
    /// counters and for tests that the simulator exercises them.
    public private(set) var skipsAhead: UInt64 = 0

    /// Broken protocol invariants this replica noticed (never expected; checked by the simulator).
    public private(set) var invariantViolations: [String] = []

    /// A replica starting fresh: initial leaders lead at round 0.
    public init(config: PaxosConfig, id: ReplicaID, now: Instant) {
        precondition((try? config.validate()) != nil, "invalid config: \(String(describing: try? config.validate()))")
        precondition(id.rawValue >= 0 && id.rawValue < config.replicaCount, "replica \(id) outside a group of \(config.replicaCount)")
        self.config = config
        self.id = id
        stride = UInt64(config.sublogCount)
        allReplicas = (0..<config.replicaCount).map(ReplicaID.init)
        let initial = (0..<config.sublogCount).map { Ballot(round: 0, replica: Self.owner(ofSublog: $0, mode: config.mode)) }
        promised = initial
        knownBallot = initial
        lastHeard = Array(repeating: now, count: config.replicaCount)
        roundTripSamples = Array(repeating: [], count: config.replicaCount)
        batchesSeen = Array(repeating: 0, count: config.sublogCount)
        batchesAtSample = batchesSeen
        batchesPerSecond = Array(repeating: 0, count: config.sublogCount)
        rateSampledAt = now
        lastHeartbeatAt = now
        lastCatchUpAt = now
        lastDeliveryAt = now
        self.now = now
        for sublog in 0..<config.sublogCount where initial[sublog].replica == id {
            leaderships[sublog] = Leadership(sublog: sublog, ballot: initial[sublog], phase: .leading, nextSlot: UInt64(sublog))
        }
    }

    /// A replica restarting after a crash from its persisted records. It leads nothing until it
    /// wins phase 1 again, with a ballot above every one it promised or used.
    ///
    /// - Parameter checkpointSlot: the slot the newest checkpoint covers (every slot below it is
    ///   in the state machine the driver restored); 0 without a checkpoint. Accepted records below
    ///   it are ignored, and this replica reports nothing below it in phase 1.
    public init(config: PaxosConfig, id: ReplicaID, now: Instant, checkpointSlot: UInt64 = 0, restoring records: [PersistRecord]) {
        self.init(config: config, id: id, now: now)
        leaderships = [:]
        deliveredBelow = checkpointSlot
        compactedBelow = checkpointSlot
        horizon = checkpointSlot
        batchHorizon = checkpointSlot
        slots.forget(below: checkpointSlot)
        for record in records {
            switch record {
            case let .promised(sublog, ballot):
                guard validSublog(sublog) else { continue }
                promised[sublog] = max(promised[sublog], ballot)
            case let .accepted(ballot, run):
                let sublog = sublogOf(run.first)
                promised[sublog] = max(promised[sublog], ballot)
                for slot in run.slots(stride: stride) where slot >= checkpointSlot && (slots[slot]?.ballot ?? ballot) <= ballot {
                    slots[slot] = SlotRecord(ballot: ballot, value: run.value, decided: false)
                }
                horizon = max(horizon, run.last + 1)
                if case .batch = run.value { batchHorizon = max(batchHorizon, run.last + 1) }
                if raisesOwnFloor(sublog: sublog, at: ballot) { ownSlotsUsedBelow = max(ownSlotsUsedBelow, run.last + stride) }
            }
        }
        knownBallot = promised
    }

    // MARK: Inputs

    /// A client request arriving at this replica.
    public mutating func propose(_ request: Request, now: Instant) -> Ready {
        self.now = max(self.now, now)
        var ready = Ready()
        if config.mode == .singleLeader, leaderships[0] == nil, knownBallot[0].replica != id {
            ready.send(.forward(request), to: knownBallot[0].replica)
        } else {
            enqueue(request, into: &ready)
        }
        flush(into: &ready)
        return ready
    }

    /// A message from a peer (or from this replica to itself).
    public mutating func receive(_ message: PaxosMessage, from sender: ReplicaID, now: Instant) -> Ready {
        self.now = max(self.now, now)
        guard sender.rawValue >= 0, sender.rawValue < config.replicaCount else { return Ready() }
        // Numbers from peers are bounded before use: a ballot round near the top of UInt64 or a
        // slot far beyond the delivery window would overflow arithmetic or make a loop run for
        // ever. Such a message is not from a correct replica; it is dropped.
        guard message.ballot.map(validBallot) ?? true else { return Ready() }
        lastHeard[sender.rawValue] = self.now
        var ready = Ready()
        switch message {
        case let .prepare(sublog, ballot, fromSlot):
            guard validSublog(sublog), fromSlot < slotBound else { break }
            onPrepare(sublog: sublog, ballot: ballot, fromSlot: fromSlot, from: sender, into: &ready)
        case let .promise(sublog, ballot, fromSlot, reported, complete):
            guard validSublog(sublog) else { break }
            onPromise(sublog: sublog, ballot: ballot, fromSlot: fromSlot, reported: reported, complete: complete, from: sender, into: &ready)
        case let .accept(ballot, run):
            onAccept(ballot: ballot, run: run, from: sender, into: &ready)
        case let .accepted(ballot, first, skipped):
            for run in skipped where validRun(run) { learn(run) }
            onAccepted(ballot: ballot, first: first, from: sender, into: &ready)
        case let .rejected(sublog, higher):
            guard validSublog(sublog) else { break }
            observe(sublog: sublog, ballot: higher, into: &ready)
        case let .decided(runs):
            for run in runs where validRun(run) { learn(run) }
        case let .heartbeat(_, peerHorizon, peerBatchHorizon, sentAt):
            horizon = max(horizon, min(peerHorizon, deliveredBelow + 2 * config.deliveryWindowSlotsMax))
            batchHorizon = max(batchHorizon, min(peerBatchHorizon, deliveredBelow + 2 * config.deliveryWindowSlotsMax))
            ready.send(.heartbeatEcho(sentAtMicroseconds: sentAt), to: sender)
        case let .heartbeatEcho(sentAt):
            noteRoundTrip(to: sender, sentAtMicroseconds: sentAt)
        case let .catchUp(fromSlot):
            onCatchUp(fromSlot: fromSlot, from: sender, into: &ready)
        case let .undecided(reported):
            onUndecided(reported, from: sender)
        case let .compacted(below):
            // The peer forgot the slots this replica misses: fetch its checkpoint (the driver
            // does; the core only learns the result through `installCheckpoint`).
            if below > deliveredBelow { ready.transferState(from: sender, slot: below) }
        case .checkpointRequest, .checkpointChunk:
            // State transfer is the driver's business: it holds the checkpoints.
            break
        case let .forward(request):
            if config.mode == .singleLeader, leaderships[0] == nil, knownBallot[0].replica != id {
                // Replicas that disagree on the leader (a one-way cut) can pass a request back and
                // forth or around a cycle, and a network that duplicates messages multiplies it on
                // every lap. A replica that leads nothing drops a request forwarded by the replica
                // it takes for the leader, and passes any other on at most once per retransmission
                // timeout; the client's retry covers what is dropped.
                if knownBallot[0].replica == sender {
                    // The replica taken for the leader forwards instead of proposing: it does not
                    // lead (it lost the record of its own ballot in a crash, say) and takes this
                    // one for the leader. Nobody would ever lead without an election.
                    presumedLeaderForwards = true
                    break
                }
                if forwardedRecently(request) { break }
                ready.send(.forward(request), to: knownBallot[0].replica)
            } else {
                enqueue(request, into: &ready)
            }
        }
        deliver(into: &ready)
        flush(into: &ready)
        return ready
    }

    /// Time passing: heartbeats, retransmissions, catch-up, failure detection, batch deadlines.
    public mutating func tick(now: Instant) -> Ready {
        self.now = max(self.now, now)
        if let last = lastTickAt {
            let gap = self.now.microseconds(since: last)
            tickIntervalMicroseconds = tickIntervalMicroseconds.map { ($0 * 7 + gap) / 8 } ?? gap
        }
        lastTickAt = self.now
        var ready = Ready()
        if self.now.microseconds(since: lastHeartbeatAt) >= config.heartbeatIntervalMicroseconds {
            lastHeartbeatAt = self.now
            broadcast(.heartbeat(deliveredBelow: deliveredBelow, horizon: horizon, batchHorizon: batchHorizon,
                                 sentAtMicroseconds: self.now.nanoseconds / 1_000), includingSelf: false, into: &ready)
        }
        planSkipAhead()
        retransmit(into: &ready)
        catchUpIfStuck(into: &ready)
        electLeaders(into: &ready)
        flush(into: &ready)
        return ready
    }

    // MARK: Observers (for drivers, tests and checkers)

    /// The sublogs this replica currently leads (phase 2), with their ballots.
    public var leading: [Int: Ballot] {
        leaderships.filter { if case .leading = $0.value.phase { true } else { false } }.mapValues(\.ballot)
    }

    /// Who this replica believes leads `sublog`.
    public func presumedLeader(ofSublog sublog: Int) -> ReplicaID { knownBallot[sublog].replica }

    public var queuedRequests: Int { queue.count - queueHead }

    // MARK: Checkpoints

    /// The acceptor state a checkpoint at `deliveredBelow` must carry so that the records logged
    /// before it can be dropped: the promise of every sublog, and every slot at or above
    /// `deliveredBelow` this replica accepted or learned (at most the delivery window's worth).
    public var acceptorStateAtCheckpoint: [PersistRecord] {
        var records = promised.enumerated().map { PersistRecord.promised(sublog: $0.offset, ballot: $0.element) }
        var slot = deliveredBelow
        while slot < horizon {
            if let record = slots[slot] { records.append(.accepted(ballot: record.ballot, run: SlotRun(slot: slot, value: record.value))) }
            slot += 1
        }
        return records
    }

    /// Forgets every slot below `slot`, which a durable checkpoint now covers. From here on this
    /// replica answers a catch-up from below it with `.compacted` and refuses to report on it in
    /// phase 1 (a promise marked incomplete), so no leader mistakes a forgotten slot for an empty one.
    public mutating func compact(below slot: UInt64) {
        precondition(slot <= deliveredBelow, "compacting below \(slot), but only slots below \(deliveredBelow) are delivered")
        guard slot > compactedBelow else { return }
        compactedBelow = slot
        slots.forget(below: slot)
    }

    /// State transfer: the driver installed a peer's checkpoint covering every slot below `slot`.
    /// Delivery resumes there; leaderships are given up (their slots may be decided already) and
    /// won again by phase 1 once this replica is near the others.
    public mutating func installCheckpoint(slot: UInt64, now: Instant) -> Ready {
        self.now = max(self.now, now)
        var ready = Ready()
        guard slot > deliveredBelow else { return ready }
        for sublog in Array(leaderships.keys) { dropLeadership(of: sublog) }
        // Slots decided here but not delivered yet are in the checkpoint now. Delivery is what
        // takes their requests out of `pendingRequests`; without it a retry of one would be
        // taken for a request already under way, for ever (single-leader seed 2040: a client's
        // `openSession` never opened). Requests waiting in the queue stay pending.
        let queued = Set(queue[queueHead...].map(RequestKey.init))
        var undelivered = deliveredBelow
        while undelivered < min(slot, horizon) {
            if let record = slots[undelivered], record.decided, case let .batch(requests) = record.value {
                for request in requests where !queued.contains(RequestKey(request)) { pendingRequests.remove(RequestKey(request)) }
            }
            undelivered += 1
        }
        deliveredBelow = slot
        compactedBelow = slot
        horizon = max(horizon, slot)
        slots.forget(below: slot)
        lastDeliveryAt = self.now
        deliver(into: &ready)
        flush(into: &ready)
        return ready
    }

    // MARK: Acceptor

    private mutating func onPrepare(sublog: Int, ballot: Ballot, fromSlot: UInt64, from sender: ReplicaID, into ready: inout Ready) {
        guard ballot >= promised[sublog] else {
            ready.send(.rejected(sublog: sublog, promised: promised[sublog]), to: sender)
            return
        }
        guard fromSlot >= compactedBelow else {
            // Slots the leader asks about are forgotten here: an empty report would read as
            // "nothing accepted" and let a decided slot be filled again. Incomplete sends the
            // leader to catch up (by state transfer) before it leads.
            ready.send(.promise(sublog: sublog, ballot: ballot, fromSlot: fromSlot, slots: [], complete: false), to: sender)
            return
        }
        if ballot > promised[sublog] {
            promised[sublog] = ballot
            ready.persist(.promised(sublog: sublog, ballot: ballot))
        }
        observe(sublog: sublog, ballot: ballot, into: &ready)
        var reported: [ReportedSlot] = []
        var complete = true
        let limit = Int(2 * config.deliveryWindowSlotsMax)
        var slot = firstSlot(inSublog: sublog, atOrAfter: fromSlot)
        while slot < horizon {
            if let record = slots[slot] {
                if reported.count == limit {
                    complete = false
                    break
                }
                reported.append(ReportedSlot(slot: slot, ballot: record.decided ? nil : record.ballot, value: record.value))
            }
            slot += stride
        }
        ready.send(.promise(sublog: sublog, ballot: ballot, fromSlot: fromSlot, slots: reported, complete: complete), to: sender)
    }

    private mutating func onAccept(ballot: Ballot, run: SlotRun, from sender: ReplicaID, into ready: inout Ready) {
        guard accept(ballot: ballot, run: run, from: sender, into: &ready) else { return }
        // Sent at the end of the input, with whatever this accept made this replica skip.
        owedAcknowledgement = (sender, ballot, run.first)
        if sender != id, case .batch = run.value { batchesSeen[sublogOf(run.first)] += 1 }
        // In a group of three, the proposer and this acceptor are a quorum, and the proposer
        // accepted its proposal before sending it (in the same Ready: see `propose`), so the value
        // is chosen: learn it now, one hop after the proposal instead of three (accept, accepted,
        // decided). A slot waiting for another leader's batch is delivered that much sooner.
        if config.quorum == 2, sender == ballot.replica, sender != id { learn(run) }
    }

    /// Phase 2 at this acceptor: records `run` at `ballot` (persisted through `ready`) unless the
    /// promise or a known decision forbids it, in which case the sender is told why. Returns
    /// whether it accepted.
    private mutating func accept(ballot: Ballot, run: SlotRun, from sender: ReplicaID, into ready: inout Ready) -> Bool {
        // A run reaching below the compaction point comes from a leader that is behind: those
        // slots are decided, and this acceptor no longer knows with what. It stays silent; the
        // leader learns the decisions by catching up.
        guard validRun(run), run.first >= compactedBelow else { return false }
        let sublog = sublogOf(run.first)
        guard ballot >= promised[sublog] else {
            ready.send(.rejected(sublog: sublog, promised: promised[sublog]), to: sender)
            return false
        }
        promised[sublog] = ballot
        observe(sublog: sublog, ballot: ballot, into: &ready)
        // A leader with a ballot below the one a slot was decided at may still propose another
        // value there (Paxos only constrains higher ballots). Such an accept must not be
        // acknowledged, or it could gather a quorum; the sender is told the decision instead.
        var decidedElsewhere: [SlotRun] = []
        for slot in run.slots(stride: stride) {
            if let record = slots[slot], record.decided, record.value != run.value {
                decidedElsewhere.append(SlotRun(slot: slot, value: record.value))
            }
        }
        guard decidedElsewhere.isEmpty else {
            ready.send(.decided(decidedElsewhere), to: sender)
            return false
        }
        for slot in run.slots(stride: stride) {
            if var record = slots[slot], record.decided {
                // The same value (checked above). The slot keeps the highest ballot it was accepted
                // at, as its log records do, so that a checkpoint carries what a replay of the
                // log would rebuild (it carried the older ballot, and a restart from it forgot an
                // acceptance it had acknowledged).
                record.ballot = max(record.ballot, ballot)
                slots[slot] = record
            } else {
                slots[slot] = SlotRecord(ballot: ballot, value: run.value, decided: false)
            }
        }
        horizon = max(horizon, run.last + 1)
        if case .batch = run.value { batchHorizon = max(batchHorizon, run.last + 1) }
        ready.persist(.accepted(ballot: ballot, run: run))
        return true
    }

    private mutating func onCatchUp(fromSlot: UInt64, from sender: ReplicaID, into ready: inout Ready) {
        guard fromSlot >= compactedBelow else {
            ready.send(.compacted(below: compactedBelow), to: sender)
            return
        }
        var runs: [SlotRun] = []
        var undecided: [ReportedSlot] = []
        var slot = fromSlot
        let end = min(horizon, fromSlot &+ UInt64(config.catchUpSlotsMax))
        while slot < end {
            if let record = slots[slot] {
                if record.decided {
                    runs.append(SlotRun(slot: slot, value: record.value))
                } else {
                    undecided.append(ReportedSlot(slot: slot, ballot: record.ballot, value: record.value))
                }
            }
            slot += 1
        }
        if !runs.isEmpty { ready.send(.decided(runs), to: sender) }
        if !undecided.isEmpty { ready.send(.undecided(undecided), to: sender) }
    }

    /// A peer's acceptances of slots neither of them knows decided. Where a quorum of acceptors
    /// (this one included) accepted one value at one ballot, that value was chosen: Paxos's own
    /// definition, whenever the acceptances happened. Without this, a group that crashed as a
    /// whole kept acceptances but no decisions, and with more than a delivery window of them
    /// (slots since the last checkpoint) no replica would run phase 1 (`electLeaders` waits for
    /// catch-up first), so nothing would ever be delivered again (`csmr sim` multi-leader seed 9573).
    private mutating func onUndecided(_ reported: [ReportedSlot], from sender: ReplicaID) {
        for report in reported {
            guard let ballot = report.ballot, report.slot >= deliveredBelow, report.slot < slotBound else { continue }
            if let record = slots[report.slot], record.decided { continue }
            var entry = reportedAcceptances[report.slot] ?? (ballot, report.value, [])
            if ballot > entry.ballot { entry = (ballot, report.value, []) }
            // A lower ballot says nothing about a quorum at the highest; one value per ballot.
            guard ballot == entry.ballot, report.value == entry.value else { continue }
            entry.acceptors.insert(sender)
            if let own = slots[report.slot], own.ballot == ballot, own.value == report.value { entry.acceptors.insert(id) }
            if entry.acceptors.count >= config.quorum {
                reportedAcceptances[report.slot] = nil
                learn(SlotRun(slot: report.slot, value: report.value))
            } else if reportedAcceptances.count < 4 * config.catchUpSlotsMax || reportedAcceptances[report.slot] != nil {
                reportedAcceptances[report.slot] = entry
            }
        }
        // Entries for slots delivered meanwhile are of no further use.
        if reportedAcceptances.count >= 4 * config.catchUpSlotsMax {
            reportedAcceptances = reportedAcceptances.filter { $0.key >= deliveredBelow }
        }
    }

    // MARK: Learner

    private mutating func learn(_ run: SlotRun) {
        for slot in run.slots(stride: stride) {
            if let record = slots[slot], record.decided {
                if record.value != run.value {
                    // Only a broken protocol gets here; report it rather than crash, so the
                    // simulator can name the seed.
                    invariantViolations.append("replica \(id): slot \(slot) decided twice, as \(record.value) and as \(run.value)")
                }
                continue
            }
            slots[slot] = SlotRecord(ballot: slots[slot]?.ballot ?? Ballot(round: 0, replica: id), value: run.value, decided: true)
        }
        horizon = max(horizon, run.last + 1)
        if case .batch = run.value { batchHorizon = max(batchHorizon, run.last + 1) }
    }

    private mutating func deliver(into ready: inout Ready) {
        while let record = slots[deliveredBelow], record.decided {
            if case let .batch(requests) = record.value {
                for request in requests { pendingRequests.remove(RequestKey(request)) }
            }
            ready.deliver(Delivery(slot: deliveredBelow, value: record.value))
            deliveredBelow += 1
            lastDeliveryAt = now
        }
    }

    private mutating func catchUpIfStuck(into ready: inout Ready) {
        // In multi-leader mode slots above the last batch may stay open for good (an owner skipped
        // ahead and the others had no reason to follow): nothing waits for them.
        guard deliveredBelow < (config.mode == .multiLeader ? batchHorizon : horizon),
              now.microseconds(since: lastDeliveryAt) >= config.retransmitTimeoutMicroseconds,
              now.microseconds(since: lastCatchUpAt) >= config.retransmitTimeoutMicroseconds,
              config.replicaCount > 1 else { return }
        lastCatchUpAt = now
        // Ask the peers in turn, skipping suspected ones, so one dead peer cannot stall catch-up.
        for _ in 0..<config.replicaCount {
            catchUpCursor = (catchUpCursor + 1) % config.replicaCount
            let peer = ReplicaID(catchUpCursor)
            if peer != id, !isSuspected(peer) {
                ready.send(.catchUp(fromSlot: deliveredBelow), to: peer)
                return
            }
        }
    }

    // MARK: Proposer

    private mutating func enqueue(_ request: Request, into ready: inout Ready) {
        let key = RequestKey(request)
        guard !pendingRequests.contains(key) else { return }
        guard queuedRequests < config.requestQueueMax else {
            ready.drop(request)
            return
        }
        if queuedRequests == 0 { oldestQueuedAt = now }
        pendingRequests.insert(key)
        queue.append(request)
        queueBytes += Self.estimatedBytes(request)
    }

    /// Proposes what can be proposed now: batches while the pipeline has room, then a no-op run
    /// over unused slots below the horizon.
    private mutating func flush(into ready: inout Ready) {
        if config.mode == .singleLeader, leaderships[0] == nil, knownBallot[0].replica != id, queuedRequests > 0 {
            // Leadership moved on while requests waited here: hand them to the new leader.
            let leader = knownBallot[0].replica
            for request in queue[queueHead...] {
                pendingRequests.remove(RequestKey(request))
                ready.send(.forward(request), to: leader)
            }
            queue.removeAll(keepingCapacity: true)
            queueHead = 0
            queueBytes = 0
            oldestQueuedAt = nil
        }
        // In sublog order, without sorting keys (this runs after every input).
        for sublog in 0..<config.sublogCount {
            guard var leadership = leaderships[sublog], case .leading = leadership.phase else { continue }
            if leadership.proposalLimit != nil {
                // A leadership of the slots its phase 1 could cover only (see `onPromise`): it
                // proposes nothing more, and once those are decided, phase 1 runs again from
                // further on.
                if leadership.inflight.isEmpty { dropLeadership(of: sublog) }
                continue
            }
            let windowEnd = deliveredBelow + config.deliveryWindowSlotsMax
            var refused = false
            if sublog == clientSublog {
                while leadership.batchesInFlight < config.pipelineDepthMax, queuedRequests > 0,
                      leadership.nextSlot < windowEnd, batchIsDue(batchesInFlight: leadership.batchesInFlight) {
                    let batch = takeBatch()
                    guard propose(SlotRun(slot: leadership.nextSlot, value: .batch(batch)), in: &leadership, into: &ready) else {
                        requeue(batch)
                        refused = true
                        break
                    }
                    leadership.nextSlot += stride
                    batchesSeen[sublog] += 1
                }
            }
            // Rule 2: close the unused slots below the last slot someone waits for; an owner also
            // closes those below its skip-ahead point.
            var skipBelow = config.mode == .multiLeader ? batchHorizon : horizon
            if skipsWithoutRound(leadership) { skipBelow = max(skipBelow, skipAheadBelow) }
            skipBelow = min(skipBelow, windowEnd)
            if !refused, leadership.nextSlot < skipBelow {
                let last = lastSlot(inSublog: sublog, below: skipBelow)
                let run = SlotRun(first: leadership.nextSlot, last: last, value: .noop)
                if skipsWithoutRound(leadership) {
                    if last >= batchHorizon { skipsAhead += 1 }
                    skip(run, at: leadership.ballot, into: &ready)
                } else {
                    refused = !propose(run, in: &leadership, into: &ready)
                }
                leadership.nextSlot = last + stride
            }
            leaderships[sublog] = leadership
            if refused { dropLeadership(of: sublog) }
        }
        // A skip decided here (or, in a group of one, a proposal) may be what the next undelivered
        // slot waited for.
        deliver(into: &ready)
        sendAcknowledgementAndSkips(into: &ready)
    }

    /// The end of an input: the acknowledgement it owes carries the skips it made; the other peers
    /// get the skips as a decision. Both leave after the skips' records are durable (`Ready`).
    private mutating func sendAcknowledgementAndSkips(into ready: inout Ready) {
        let skips = skipsThisInput
        skipsThisInput = []
        var acknowledged: ReplicaID?
        if let owed = owedAcknowledgement {
            owedAcknowledgement = nil
            ready.send(.accepted(ballot: owed.ballot, first: owed.first, skipped: skips), to: owed.to)
            acknowledged = owed.to
        }
        guard !skips.isEmpty else { return }
        for peer in replicas where peer != id && peer != acknowledged { ready.send(.decided(skips), to: peer) }
    }

    /// An echo of this replica's heartbeat: the round trip to `peer`, on this replica's clock.
    private mutating func noteRoundTrip(to peer: ReplicaID, sentAtMicroseconds sentAt: UInt64) {
        let nowMicroseconds = now.nanoseconds / 1_000
        // An echo from the future or older than a suspicion is not this replica's (or is useless).
        guard sentAt <= nowMicroseconds, nowMicroseconds - sentAt < config.suspectTimeoutMicroseconds else { return }
        if roundTripSamples[peer.rawValue].count == Self.roundTripSamplesMax { roundTripSamples[peer.rawValue].removeFirst() }
        roundTripSamples[peer.rawValue].append(nowMicroseconds - sentAt)
    }

    /// Multi-leader, on each tick: where this owner's skips should reach so that they arrive before
    /// the others' batches need them (see the header).
    private mutating func planSkipAhead() {
        guard config.mode == .multiLeader, config.skipAheadPercent > 0, config.replicaCount > 1 else { return }
        let elapsed = now.microseconds(since: rateSampledAt)
        if elapsed >= config.heartbeatIntervalMicroseconds {
            for sublog in 0..<config.sublogCount {
                let perSecond = Double(batchesSeen[sublog] - batchesAtSample[sublog]) * 1_000_000 / Double(elapsed)
                batchesPerSecond[sublog] = (batchesPerSecond[sublog] + perSecond) / 2
                batchesAtSample[sublog] = batchesSeen[sublog]
            }
            rateSampledAt = now
        }
        guard let leadership = leaderships[clientSublog], case .leading = leadership.phase, skipsWithoutRound(leadership) else { return }
        // How fast slot numbers grow, from counts of batches (every owner's, this one's too), never
        // from slot numbers: those grow with the skips ahead themselves, and an estimate fed by them
        // would run away. Each batch may open a new round of the stride's slots (owners that hear
        // of each other late propose above everything they heard of), so this bounds the growth
        // from above.
        let slotsPerSecond = Double(stride) * batchesPerSecond.reduce(0, +)
        // Half the nearest peer's round trip, not the farthest's: each owner's batches go above its
        // skips and the others follow a batch above their own slots (rule 2), so two owners that
        // each led by more than half their round trip would push slot numbers up faster than the
        // batches do, and a remote owner's estimate would fall behind again.
        let roundTrip = replicas.filter { $0 != id && !isSuspected($0) }.compactMap { roundTripSamples[$0.rawValue].min() }.min()
        guard let roundTrip, let tickInterval = tickIntervalMicroseconds, slotsPerSecond > 0 else { return }
        // Skips ahead move a tick at a time; a one-way delay shorter than two ticks (in process, on
        // a LAN) is hidden better by the skips that answer accepts, at once and inside the reply.
        guard roundTrip / 2 >= 2 * tickInterval else { return }
        let slots = slotsPerSecond * Double(roundTrip) / 2 / 1_000_000 * Double(config.skipAheadPercent) / 100
        let lookahead = min(UInt64(slots), config.deliveryWindowSlotsMax / 16)
        // Less than one of its own slots ahead is what reacting to the accepts gives anyway (in
        // process, or on a LAN, where round trips are short): no message for it.
        guard lookahead >= stride else { return }
        skipAheadBelow = max(skipAheadBelow, batchHorizon + lookahead)
    }

    /// Whether `leadership` skips by telling the others (no round): only the owner of a sublog,
    /// leading it at one of its own ballots, in multi-leader mode (the header says why that is safe,
    /// and why not in single-leader mode or for a revoker).
    private func skipsWithoutRound(_ leadership: Leadership) -> Bool {
        config.mode == .multiLeader && raisesOwnFloor(sublog: leadership.sublog, at: leadership.ballot)
    }

    /// Whether what this replica proposes or skips in `sublog` at `ballot` raises
    /// `ownSlotsUsedBelow`: its own sublog at any of its ballots (multi-leader), or at round 0
    /// (single-leader, where nothing skips without a round and the floor is only conservative).
    private func raisesOwnFloor(sublog: Int, at ballot: Ballot) -> Bool {
        ballot.replica == id && Self.owner(ofSublog: sublog, mode: config.mode) == id && (config.mode == .multiLeader || ballot.round == 0)
    }

    /// The owner's skip: persisted as accepted at its ballot before anything reveals it
    /// (so a restart rebuilds `ownSlotsUsedBelow` above it), learned here, and sent at the end of
    /// the input as decided (to the proposer of an accept it answers, inside the acknowledgement).
    private mutating func skip(_ run: SlotRun, at ballot: Ballot, into ready: inout Ready) {
        ready.persist(.accepted(ballot: ballot, run: run))
        ownSlotsUsedBelow = max(ownSlotsUsedBelow, run.last + stride)
        learn(run)
        skipsThisInput.append(run)
    }

    /// The sublog this replica proposes client requests in, if it leads it.
    private var clientSublog: Int { config.mode == .multiLeader ? id.rawValue : 0 }

    /// Whether the queue makes a batch now: a full one always; one that is not full once its oldest
    /// request waited `batchDelayMicrosecondsMax`, unless adaptive batching holds it because enough
    /// batches are in flight (a decision, or `batchHoldMicrosecondsMax`, releases it).
    private func batchIsDue(batchesInFlight: Int) -> Bool {
        if queuedRequests >= config.batchCommandsMax || queueBytes >= config.batchBytesMax { return true }
        guard let oldest = oldestQueuedAt else { return false }
        let waited = now.microseconds(since: oldest)
        if batchesInFlight >= config.batchHoldInflightMin, waited < config.batchHoldMicrosecondsMax { return false }
        return waited >= config.batchDelayMicrosecondsMax
    }

    private mutating func takeBatch() -> [Request] {
        var batch: [Request] = []
        var bytes = 0
        while queueHead < queue.count, batch.count < config.batchCommandsMax {
            let request = queue[queueHead]
            let size = Self.estimatedBytes(request)
            if !batch.isEmpty, bytes + size > config.batchBytesMax { break }
            batch.append(request)
            bytes += size
            queueHead += 1
        }
        queueBytes -= bytes
        if queueHead == queue.count {
            queue.removeAll(keepingCapacity: true)
            queueHead = 0
            oldestQueuedAt = nil
        } else {
            if queueHead > 1_024, queueHead * 2 > queue.count {
                queue.removeFirst(queueHead)
                queueHead = 0
            }
            // The rest waited at least as long as the batch just taken.
            oldestQueuedAt = now
        }
        return batch
    }

    /// Phase 2 for `run`. The leader accepts it itself first, in the Ready that carries the
    /// accepts, so its acceptance is persisted before any peer can see the proposal (a peer in a
    /// group of three learns the value on accepting it, counting on that). If its own acceptor
    /// refuses (the leadership is stale: it learned a decision or a promise the ballot cannot
    /// override), nothing is sent and the caller gives the leadership up; returns false then.
    private mutating func propose(_ run: SlotRun, in leadership: inout Leadership, into ready: inout Ready) -> Bool {
        guard accept(ballot: leadership.ballot, run: run, from: id, into: &ready) else { return false }
        horizon = max(horizon, run.last + 1)
        guard config.quorum > 1 else {
            // A group of one: the leader's acceptance is the quorum.
            learn(run)
            return true
        }
        leadership.inflight[run.first] = Proposal(run: run, acks: [id], sentAt: now)
        if case .batch = run.value { leadership.batchesInFlight += 1 }
        broadcast(.accept(ballot: leadership.ballot, run: run), includingSelf: false, into: &ready)
        return true
    }

    private mutating func onAccepted(ballot: Ballot, first: UInt64, from sender: ReplicaID, into ready: inout Ready) {
        let sublog = sublogOf(first)
        guard var leadership = leaderships[sublog], leadership.ballot == ballot,
              var proposal = leadership.inflight[first] else { return }
        proposal.acks.insert(sender)
        guard proposal.acks.count >= config.quorum else {
            leadership.inflight[first] = proposal
            leaderships[sublog] = leadership
            return
        }
        leadership.inflight[first] = nil
        if case .batch = proposal.run.value { leadership.batchesInFlight -= 1 }
        leaderships[sublog] = leadership
        learn(proposal.run)
        // In a group of three every acceptor learns the value when it accepts it (see `onAccept`),
        // the one that has not answered yet too: its accept is on the way, on the same FIFO link
        // a decision would take. Only if that accept is lost or refused does it need the decision,
        // and then it catches up (`catchUpIfStuck`: heartbeats tell it how far the batches go).
        // Sending it anyway cost a quarter of multi-leader's messages. Larger groups learn from
        // the decision.
        guard config.quorum != 2 else { return }
        for peer in replicas where peer != id { ready.send(.decided([proposal.run]), to: peer) }
    }

    private mutating func onPromise(sublog: Int, ballot: Ballot, fromSlot: UInt64, reported: [ReportedSlot], complete: Bool,
                                    from sender: ReplicaID, into ready: inout Ready) {
        guard var leadership = leaderships[sublog], leadership.ballot == ballot,
              case .preparing(let from, var promises, let sentAt) = leadership.phase, from == fromSlot else { return }
        var reported = reported
        if !complete || reported.contains(where: { $0.slot >= slotBound }) {
            // The acceptor holds more than one report carries, or reports slots beyond this
            // replica's window. The report still covers every slot of the sublog up to its last one
            // (slots are reported in order): this leadership decides those only, and is given up
            // once they are decided, so that phase 1 runs again from further on. That is how a group
            // that restarted as a whole with more than two windows of acceptances and no decisions
            // gets going again. A report that covers nothing leaves this replica too far behind to
            // lead: it retries once catch-up has brought it closer.
            // Never past the delivery window either, which bounds every proposal.
            let cut = min(complete ? slotBound : (reported.last.map { $0.slot + 1 } ?? fromSlot), slotBound,
                          deliveredBelow + config.deliveryWindowSlotsMax)
            reported.removeAll { $0.slot >= cut }
            guard cut > fromSlot else {
                dropLeadership(of: sublog)
                return
            }
            leadership.proposalLimit = min(leadership.proposalLimit ?? cut, cut)
        }
        promises[sender] = reported
        guard promises.count >= config.quorum else {
            leadership.phase = .preparing(fromSlot: from, promises: promises, sentAt: sentAt)
            leaderships[sublog] = leadership
            return
        }
        // Phase 1 is won. For each slot, a decided value wins; otherwise the value accepted at the
        // highest ballot; slots nobody reported get no-ops.
        var chosen: [UInt64: (ballot: Ballot?, value: SlotValue)] = [:]
        let covered = leadership.proposalLimit ?? UInt64.max
        for report in promises.values.joined() where validSlot(report.slot, inSublog: sublog) && report.slot >= from && report.slot < covered {
            if let current = chosen[report.slot] {
                guard let currentBallot = current.ballot else { continue }
                if report.ballot == nil || report.ballot! > currentBallot { chosen[report.slot] = (report.ballot, report.value) }
            } else {
                chosen[report.slot] = (report.ballot, report.value)
            }
        }
        leadership.phase = .leading
        leadership.nextSlot = from
        var accepted = true
        if let highest = chosen.keys.max() {
            var noopStart: UInt64?
            var slot = from
            while slot <= highest {
                let value = chosen[slot]?.value ?? .noop
                if case .noop = value {
                    if noopStart == nil { noopStart = slot }
                } else {
                    if let start = noopStart {
                        accepted = accepted && propose(SlotRun(first: start, last: slot - stride, value: .noop), in: &leadership, into: &ready)
                        noopStart = nil
                    }
                    accepted = accepted && propose(SlotRun(slot: slot, value: value), in: &leadership, into: &ready)
                }
                slot += stride
            }
            if let start = noopStart {
                accepted = accepted && propose(SlotRun(first: start, last: highest, value: .noop), in: &leadership, into: &ready)
            }
            leadership.nextSlot = highest + stride
        }
        if let limit = leadership.proposalLimit {
            // Only the slots the reports covered: the ones nobody reported get no-ops (nothing was
            // chosen there: the quorum covered them), and nothing goes at or above the limit.
            if leadership.nextSlot < limit {
                let last = lastSlot(inSublog: sublog, below: limit)
                if last >= leadership.nextSlot {
                    accepted = accepted && propose(SlotRun(first: leadership.nextSlot, last: last, value: .noop), in: &leadership, into: &ready)
                    leadership.nextSlot = last + stride
                }
            }
        } else if Self.owner(ofSublog: sublog, mode: config.mode) == id, leadership.nextSlot < ownSlotsUsedBelow {
            // Slots this owner gave a value or a skip at an earlier ballot that no promise reported (the
            // quorum may not include whoever learned them): only no-ops may go there, never a batch.
            let last = lastSlot(inSublog: sublog, below: ownSlotsUsedBelow)
            accepted = accepted && propose(SlotRun(first: leadership.nextSlot, last: last, value: .noop), in: &leadership, into: &ready)
            leadership.nextSlot = last + stride
        }
        leaderships[sublog] = leadership
        // Its own acceptor refused a value (it learned a decision or a promise meanwhile): this
        // leadership is stale; give it up and try again later.
        if !accepted { dropLeadership(of: sublog) }
    }

    /// Notes a ballot seen for `sublog`; a higher one than this replica leads with ends its
    /// leadership of that sublog.
    private mutating func observe(sublog: Int, ballot: Ballot, into ready: inout Ready) {
        if ballot > knownBallot[sublog] {
            knownBallot[sublog] = ballot
            presumedLeaderForwards = false
        }
        if let leadership = leaderships[sublog], leadership.ballot < ballot { dropLeadership(of: sublog) }
    }

    private mutating func dropLeadership(of sublog: Int) {
        guard let leadership = leaderships.removeValue(forKey: sublog) else { return }
        if raisesOwnFloor(sublog: sublog, at: leadership.ballot) { ownSlotsUsedBelow = max(ownSlotsUsedBelow, leadership.nextSlot) }
        // Client batches in flight may or may not be decided by the next leader. They go back to
        // the front of the queue, in slot order, to be proposed again once this replica leads
        // (or, single-leader, to be forwarded): if both copies are decided, the session table
        // answers the second from the first's reply, so nothing runs twice, and no client waits
        // for its retry timeout because a (falsely) suspected leader was replaced.
        var requeued: [Request] = []
        for first in leadership.inflight.keys.sorted() {
            if case let .batch(requests) = leadership.inflight[first]!.run.value { requeued += requests }
        }
        requeue(requeued)
        lastPrepareAt[sublog] = now
    }

    /// Puts requests back at the front of the queue, in order.
    private mutating func requeue(_ requests: [Request]) {
        guard !requests.isEmpty else { return }
        if queuedRequests == 0 { oldestQueuedAt = now }
        queue.replaceSubrange(queueHead..<queueHead, with: requests)
        queueBytes += requests.reduce(0) { $0 + Self.estimatedBytes($1) }
    }

    private mutating func startPrepare(sublog: Int, into ready: inout Ready) {
        presumedLeaderForwards = false
        let ballot = Ballot(round: knownBallot[sublog].round + 1, replica: id)
        knownBallot[sublog] = ballot
        let from = firstSlot(inSublog: sublog, atOrAfter: deliveredBelow)
        leaderships[sublog] = Leadership(sublog: sublog, ballot: ballot, phase: .preparing(fromSlot: from, promises: [:], sentAt: now), nextSlot: from)
        lastPrepareAt[sublog] = now
        broadcast(.prepare(sublog: sublog, ballot: ballot, fromSlot: from), includingSelf: true, into: &ready)
    }

    private mutating func retransmit(into ready: inout Ready) {
        let timeout = config.retransmitTimeoutMicroseconds
        for sublog in 0..<config.sublogCount {
            guard var leadership = leaderships[sublog] else { continue }
            switch leadership.phase {
            case let .preparing(from, promises, sentAt):
                guard now.microseconds(since: sentAt) >= timeout else { continue }
                // A revocation started while the owner seemed dead is abandoned once it is heard
                // from again: pressing on would take a live owner's sublog away.
                let owner = Self.owner(ofSublog: sublog, mode: config.mode)
                if config.mode == .multiLeader, owner != id, !isSuspected(owner) {
                    dropLeadership(of: sublog)
                    continue
                }
                for peer in replicas where promises[peer] == nil {
                    ready.send(.prepare(sublog: sublog, ballot: leadership.ballot, fromSlot: from), to: peer)
                }
                leadership.phase = .preparing(fromSlot: from, promises: promises, sentAt: now)
            case .leading:
                var requeued: [Request] = []
                for first in leadership.inflight.keys.sorted() {
                    var proposal = leadership.inflight[first]!
                    guard now.microseconds(since: proposal.sentAt) >= timeout else { continue }
                    if proposal.run.last < deliveredBelow {
                        // Every slot of it was delivered meanwhile (a state transfer, or a
                        // decision learned from another leader): there is nothing left to gather,
                        // and compacted peers would never answer, so the proposal would hold its
                        // pipeline place for ever. Its requests are proposed again unless they were
                        // delivered here (the session table absorbs a second decision of one).
                        leadership.inflight[first] = nil
                        if case let .batch(requests) = proposal.run.value {
                            leadership.batchesInFlight -= 1
                            requeued += requests.filter { pendingRequests.contains(RequestKey($0)) }
                        }
                        continue
                    }
                    // A skip run whose first slots this replica has delivered since (they were
                    // decided, by a state transfer or its own earlier ballot): peers may have
                    // compacted them, and an acceptor ignores a run that starts below its
                    // compaction point, so the run would never gather a quorum and the slots
                    // after it would stall. Only its undelivered part still needs acceptors;
                    // acknowledgements of the whole run cover that part too.
                    let rest = firstSlot(inSublog: sublog, atOrAfter: deliveredBelow)
                    if proposal.run.first < deliveredBelow, rest <= proposal.run.last {
                        leadership.inflight[first] = nil
                        proposal.run = SlotRun(first: rest, last: proposal.run.last, value: proposal.run.value)
                    }
                    for peer in replicas where !proposal.acks.contains(peer) {
                        ready.send(.accept(ballot: leadership.ballot, run: proposal.run), to: peer)
                    }
                    proposal.sentAt = now
                    leadership.inflight[proposal.run.first] = proposal
                }
                requeue(requeued)
            }
            leaderships[sublog] = leadership
        }
    }

    /// Starts phase 1 where a sublog has no live leader: an owner regains its own sublog, and the
    /// lowest-numbered unsuspected replica revokes a suspected leader's.
    private mutating func electLeaders(into ready: inout Ready) {
        // Too far behind to lead: catch up first (its phase 1 report would not fit a message: a
        // promise reports at most two windows of slots, and none from beyond four). Two windows,
        // not one: after a whole group restarted, its acceptances may reach a window past a slot
        // nobody can decide without phase 1 (re-proposed at different ballots, so no quorum at one
        // ballot shows in `onUndecided`), and then no replica may wait for catch-up first
        // (`csmr sim` multi-leader seed 8518).
        // Unless nothing has been delivered for a long while: then catch-up is not helping (a group
        // that restarted as a whole knows no decisions), and phase 1 over what the reports can
        // cover is the way on (`onPromise`).
        let stuck = now.microseconds(since: lastDeliveryAt) >= 4 * config.retransmitTimeoutMicroseconds
        guard horizon <= deliveredBelow + 2 * config.deliveryWindowSlotsMax || stuck else { return }
        let lowestUnsuspected = replicas.first { !isSuspected($0) } ?? id
        for sublog in 0..<config.sublogCount where leaderships[sublog] == nil {
            // Back off after a failed attempt; lower-numbered replicas retry sooner, so rivals
            // do not keep preempting each other.
            if let last = lastPrepareAt[sublog],
               now.microseconds(since: last) < config.retransmitTimeoutMicroseconds * UInt64(1 + id.rawValue) { continue }
            let leader = knownBallot[sublog].replica
            let owner = Self.owner(ofSublog: sublog, mode: config.mode)
            let wanted: Bool
            switch config.mode {
            case .multiLeader:
                if owner == id {
                    wanted = true
                } else {
                    wanted = isSuspected(owner) && (leader == owner || leader == id || isSuspected(leader))
                        && lowestAlive(excluding: owner) == id
                }
            case .singleLeader:
                // The replica taken for the leader forwarding requests here proves it leads
                // nothing, and only this replica knows: it still sends heartbeats, so the lowest
                // unsuspected replica suspects nothing and would never call the election. (Seed
                // 1447 of five: a leader lost its ballot's record in a crash after its prepare
                // left, so it and one peer each took the other for the leader, for ever.)
                wanted = leader == id || presumedLeaderForwards || (isSuspected(leader) && lowestUnsuspected == id)
            }
            if wanted { startPrepare(sublog: sublog, into: &ready) }
        }
    }

    private func lowestAlive(excluding excluded: ReplicaID) -> ReplicaID? {
        replicas.first { $0 != excluded && !isSuspected($0) }
    }

    private func isSuspected(_ replica: ReplicaID) -> Bool {
        replica != id && now.microseconds(since: lastHeard[replica.rawValue]) > config.suspectTimeoutMicroseconds
    }

    // MARK: Helpers

    private var replicas: [ReplicaID] { allReplicas }

    private mutating func broadcast(_ message: PaxosMessage, includingSelf: Bool, into ready: inout Ready) {
        for peer in replicas where includingSelf || peer != id { ready.send(message, to: peer) }
    }

    static func owner(ofSublog sublog: Int, mode: LeadershipMode) -> ReplicaID {
        mode == .multiLeader ? ReplicaID(sublog) : ReplicaID(0)
    }

    private func sublogOf(_ slot: UInt64) -> Int { Int(slot % stride) }

    private func validSublog(_ sublog: Int) -> Bool { sublog >= 0 && sublog < config.sublogCount }

    /// Ballot rounds grow by one per election; 2⁶² leaves room for any real run and no overflow.
    private func validBallot(_ ballot: Ballot) -> Bool {
        ballot.round < 1 << 62 && ballot.replica.rawValue >= 0 && ballot.replica.rawValue < config.replicaCount
    }

    /// No slot at or beyond this is taken from a peer (the same bound as `validRun`).
    private var slotBound: UInt64 { deliveredBelow &+ 4 * config.deliveryWindowSlotsMax }

    private func validSlot(_ slot: UInt64, inSublog sublog: Int) -> Bool { sublogOf(slot) == sublog }

    /// Whether a run from a peer is well formed: same sublog at both ends, within the window.
    private func validRun(_ run: SlotRun) -> Bool {
        run.first <= run.last && sublogOf(run.first) == sublogOf(run.last) && run.last < slotBound
    }

    private func firstSlot(inSublog sublog: Int, atOrAfter slot: UInt64) -> UInt64 {
        let offset = (UInt64(sublog) + stride - slot % stride) % stride
        return slot + offset
    }

    /// The highest slot of `sublog` strictly below `bound` (bound must exceed the sublog's index).
    private func lastSlot(inSublog sublog: Int, below bound: UInt64) -> UInt64 {
        let candidate = bound - 1
        return candidate - (candidate + stride - UInt64(sublog)) % stride
    }

    /// Whether `request` was passed on within the last retransmission timeout; notes it if not.
    /// Entries older than that are dropped once the table holds `requestQueueMax` of them.
    private mutating func forwardedRecently(_ request: Request) -> Bool {
        let key = RequestKey(request)
        if let at = forwardedAt[key], now.microseconds(since: at) < config.retransmitTimeoutMicroseconds { return true }
        if forwardedAt.count >= config.requestQueueMax {
            forwardedAt = forwardedAt.filter { now.microseconds(since: $0.value) < config.retransmitTimeoutMicroseconds }
        }
        forwardedAt[key] = now
        return false
    }

    /// A rough size of a request in a batch, for `batchBytesMax`.
    static func estimatedBytes(_ request: Request) -> Int {
        let payload = switch request.command {
        case let .kvGet(key): key.utf8.count
        case let .kvPut(key, value): key.utf8.count + value.utf8.count
        case let .lockAcquire(name), let .lockRelease(name): name.utf8.count
        case let .logAppend(entry), let .logAppendFrom(_, _, entry): entry.utf8.count
        case .logRetrieve, .logTruncate, .openSession: 16
        }
        return 32 + payload
    }
}

/// Slot records by slot number. Slots fill densely from 0 (skips are records too), so arrays
/// indexed by slot beat a hash table: no hashing, no rehash. The records live in fixed-size chunks
/// rather than one array: a single array doubles as it grows, and copying (and first touching) a
/// table of millions of slots stalled a replica for tens of milliseconds; a new chunk costs one
/// 4,096-slot allocation and copies nothing. Callers validate slot numbers from peers against the
/// delivery window before they get here.
struct SlotTable: Sendable {
    /// Slots per chunk, a power of two so that a slot's chunk and offset are a shift and a mask.
    private static let chunkShift = 12
    private static let chunkSlots = 1 << chunkShift
    private var chunks: [[SlotRecord?]] = []
    /// The slot `chunks[0][0]` stands for: a multiple of `chunkSlots`.
    private var base: UInt64 = 0
    /// Every slot below this is forgotten (compacted): reads give nil and writes are ignored.
    private var forgottenBelow: UInt64 = 0

    subscript(slot: UInt64) -> SlotRecord? {
        get {
            guard slot >= forgottenBelow else { return nil }
            let index = slot - base
            let chunk = Int(index >> UInt64(Self.chunkShift))
            return chunk < chunks.count ? chunks[chunk][Int(index) & (Self.chunkSlots - 1)] : nil
        }
        set {
            guard slot >= forgottenBelow else { return }
            let index = slot - base
            let chunk = Int(index >> UInt64(Self.chunkShift))
            if chunk >= chunks.count {
                guard newValue != nil else { return }
                while chunks.count <= chunk { chunks.append(Array(repeating: nil, count: Self.chunkSlots)) }
            }
            chunks[chunk][Int(index) & (Self.chunkSlots - 1)] = newValue
        }
    }

    /// Drops every record below `slot`: whole chunks are released, and the part of the first kept
    /// chunk below `slot` is cleared so its values can be freed.
    mutating func forget(below slot: UInt64) {
        guard slot > forgottenBelow else { return }
        var cleared = max(forgottenBelow, base)
        forgottenBelow = slot
        let wholeChunks = Int(min((slot - base) >> UInt64(Self.chunkShift), UInt64(chunks.count)))
        if wholeChunks > 0 {
            chunks.removeFirst(wholeChunks)
            base += UInt64(wholeChunks) << UInt64(Self.chunkShift)
            cleared = max(cleared, base)
        }
        guard !chunks.isEmpty else {
            // Nothing held at or above `slot`: restart the table at the chunk that holds it.
            base = slot & ~UInt64(Self.chunkSlots - 1)
            return
        }
        while cleared < slot {
            chunks[0][Int(cleared - base)] = nil
            cleared += 1
        }
    }
}

struct SlotRecord: Sendable {
    var ballot: Ballot
    var value: SlotValue
    var decided: Bool
}

struct Proposal: Sendable {
    var run: SlotRun
    var acks: Set<ReplicaID>
    var sentAt: Instant
}

struct Leadership: Sendable {
    enum Phase: Sendable {
        case preparing(fromSlot: UInt64, promises: [ReplicaID: [ReportedSlot]], sentAt: Instant)
        case leading
    }

    var sublog: Int
    var ballot: Ballot
    var phase: Phase
    var nextSlot: UInt64
    var inflight: [UInt64: Proposal] = [:]
    var batchesInFlight = 0
    /// Set when some promise's report was cut (see `PaxosReplica.onPromise`): this leadership
    /// proposes only below it.
    var proposalLimit: UInt64?
}
