import Paxos
import Primitives
import Services
import Testing

@Suite struct ConfigTests {
    @Test func theDefaultsAreValidForThreeFiveAndSevenReplicas() throws {
        for replicas in [1, 3, 5, 7] {
            for mode in LeadershipMode.allCases { try PaxosConfig(replicaCount: replicas, mode: mode).validate() }
        }
    }

    @Test func boundsAreCheckedAgainstEachOther() {
        #expect(throws: ConfigError.self) { try PaxosConfig(replicaCount: 4).validate() }
        // Each change alone breaks the bound of the named field.
        let refusals: [(field: String, change: @Sendable (inout PaxosConfig) -> Void)] = [
            ("requestQueueMax", { $0.requestQueueMax = 10; $0.batchCommandsMax = 64 }),
            ("deliveryWindowSlotsMax", { $0.pipelineDepthMax = 4_000 }),
            ("suspectTimeoutMicroseconds", { $0.suspectTimeoutMicroseconds = $0.heartbeatIntervalMicroseconds }),
            ("batchHoldInflightMin", { $0.batchHoldInflightMin = 0 }),
            ("batchHoldMicrosecondsMax", { $0.batchHoldMicrosecondsMax = $0.suspectTimeoutMicroseconds }),
        ]
        for refusal in refusals {
            var config = PaxosConfig(replicaCount: 3)
            refusal.change(&config)
            #expect { try config.validate() } throws: { ($0 as? ConfigError)?.field == refusal.field }
        }
    }
}

/// A tiny in-memory group: delivers every message in FIFO order until none is left.
struct Group {
    var replicas: [PaxosReplica]
    var storages: [MemoryStorage]
    var delivered: [[Delivery]]
    var queue: [(from: ReplicaID, outgoing: Outgoing)] = []
    let now = Instant.zero

    init(config: PaxosConfig) {
        replicas = (0..<config.replicaCount).map { PaxosReplica(config: config, id: ReplicaID($0), now: .zero) }
        storages = Array(repeating: MemoryStorage(), count: config.replicaCount)
        delivered = Array(repeating: [], count: config.replicaCount)
    }

    mutating func absorb(_ ready: Ready, at index: Int) {
        delivered[index] += ready.deliveries
        for outgoing in ready.messages(persistingTo: &storages[index]) { queue.append((ReplicaID(index), outgoing)) }
    }

    mutating func propose(_ request: Request, at index: Int) {
        absorb(replicas[index].propose(request, now: now), at: index)
    }

    mutating func stabilize() {
        while !queue.isEmpty {
            let (from, outgoing) = queue.removeFirst()
            let index = outgoing.to.rawValue
            absorb(replicas[index].receive(outgoing.message, from: from, now: now), at: index)
        }
    }
}

@Suite struct CoreTests {
    static func put(_ client: UInt64, _ sequence: UInt64) -> Request {
        Request(client: ClientID(client), sequence: sequence, command: .kvPut(key: "k\(client)", value: "v\(sequence)"))
    }

    @Test(arguments: LeadershipMode.allCases)
    func requestsAtEveryReplicaAreDeliveredInTheSameOrderEverywhere(mode: LeadershipMode) {
        var config = PaxosConfig(replicaCount: 3, mode: mode)
        config.batchCommandsMax = 4
        var group = Group(config: config)
        for sequence in UInt64(1)...20 {
            for replica in 0..<3 { group.propose(Self.put(UInt64(replica), sequence), at: replica) }
        }
        group.stabilize()
        let orders = group.delivered.map { deliveries in
            deliveries.flatMap { delivery -> [Request] in
                if case let .batch(requests) = delivery.value { return requests }
                return []
            }
        }
        #expect(orders[0].count == 60)
        #expect(orders[1] == orders[0])
        #expect(orders[2] == orders[0])
        #expect(group.delivered[0].map(\.slot) == Array(0..<UInt64(group.delivered[0].count)))
    }

    @Test func batchesRespectTheCommandBoundAndThePipelineBound() {
        var config = PaxosConfig(replicaCount: 3, mode: .singleLeader)
        config.batchCommandsMax = 5
        config.pipelineDepthMax = 2
        var group = Group(config: config)
        var accepts: [SlotRun] = []
        for sequence in UInt64(1)...23 {
            let ready = group.replicas[0].propose(Self.put(1, sequence), now: .zero)
            for outgoing in ready.pendingMessages where outgoing.to == ReplicaID(1) {
                if case let .accept(_, run) = outgoing.message { accepts.append(run) }
            }
            group.absorb(ready, at: 0)
        }
        // Nothing was acknowledged yet, so only two batches may be in flight.
        #expect(accepts.count == 2)
        #expect(accepts.allSatisfy { $0.value.requestCount <= 5 })
        group.stabilize()
        #expect(group.delivered[2].reduce(0) { $0 + $1.value.requestCount } == 23)
    }

    @Test func aLoadedLeaderHoldsABatchThatIsNotFullUntilItFillsOrTheHoldTimePasses() {
        var config = PaxosConfig(replicaCount: 3, mode: .singleLeader)
        config.batchCommandsMax = 4
        config.pipelineDepthMax = 8
        config.batchHoldInflightMin = 1
        config.batchHoldMicrosecondsMax = 500
        var replica = PaxosReplica(config: config, id: ReplicaID(0), now: .zero)
        func sizes(_ ready: Ready) -> [Int] {
            ready.pendingMessages.compactMap { outgoing in
                if outgoing.to == ReplicaID(1), case let .accept(_, run) = outgoing.message { run.value.requestCount } else { nil }
            }
        }
        // Nothing in flight: the first request leaves at once, alone.
        #expect(sizes(replica.propose(Self.put(1, 1), now: .zero)) == [1])
        // A batch in flight: the next requests wait while their batch fills, and it leaves full.
        for sequence in UInt64(2)...4 { #expect(sizes(replica.propose(Self.put(1, sequence), now: .zero)).isEmpty) }
        #expect(sizes(replica.propose(Self.put(1, 5), now: .zero)) == [4])
        // A request held alone leaves once it has waited batchHoldMicrosecondsMax.
        #expect(sizes(replica.propose(Self.put(1, 6), now: .zero)).isEmpty)
        #expect(sizes(replica.tick(now: Instant(nanoseconds: 499_000))).isEmpty)
        #expect(sizes(replica.tick(now: Instant(nanoseconds: 500_000))) == [1])
    }

    @Test func aRetryQueuedTwiceAtOneReplicaIsProposedOnce() {
        var config = PaxosConfig(replicaCount: 3, mode: .singleLeader)
        config.pipelineDepthMax = 1
        var group = Group(config: config)
        group.propose(Self.put(1, 1), at: 0)
        group.propose(Self.put(2, 1), at: 0)
        group.propose(Self.put(2, 1), at: 0)
        group.stabilize()
        #expect(group.delivered[1].reduce(0) { $0 + $1.value.requestCount } == 2)
    }

    @Test func acceptorStateIsPersistedBeforeTheReplyThatRevealsIt() {
        var group = Group(config: PaxosConfig(replicaCount: 3))
        let ready = group.replicas[1].receive(.accept(ballot: Ballot(round: 0, replica: ReplicaID(0)), run: SlotRun(slot: 0, value: .noop)),
                                              from: ReplicaID(0), now: .zero)
        #expect(ready.records == [.accepted(ballot: Ballot(round: 0, replica: ReplicaID(0)), run: SlotRun(slot: 0, value: .noop))])
        var storage = MemoryStorage()
        let messages = ready.messages(persistingTo: &storage)
        #expect(storage.records.count == 1)
        #expect(messages.map(\.message) == [.accepted(ballot: Ballot(round: 0, replica: ReplicaID(0)), first: 0, skipped: [])])
    }

    @Test func anIdleOwnersSkipIsPersistedThenSentWithTheAcknowledgementWithoutAnAcceptRound() {
        var replica = PaxosReplica(config: PaxosConfig(replicaCount: 3), id: ReplicaID(0), now: .zero)
        let r1 = Ballot(round: 0, replica: ReplicaID(1))
        let ready = replica.receive(.accept(ballot: r1, run: SlotRun(slot: 4, value: .batch([Self.put(1, 1)]))), from: ReplicaID(1), now: .zero)
        let skip = SlotRun(first: 0, last: 3, value: .noop)
        #expect(ready.records == [.accepted(ballot: r1, run: SlotRun(slot: 4, value: .batch([Self.put(1, 1)]))),
                                  .accepted(ballot: Ballot(round: 0, replica: ReplicaID(0)), run: skip)])
        // Its own slot 0 is decided by the skip alone; slots 1 and 2 belong to the others.
        #expect(ready.deliveries == [Delivery(slot: 0, value: .noop)])
        var storage = MemoryStorage()
        let messages = ready.messages(persistingTo: &storage)
        #expect(storage.records.count == 2)
        // The proposer gets the skip inside the acknowledgement (one message, not two); the
        // third replica gets it as a decision.
        #expect(messages == [Outgoing(to: ReplicaID(1), message: .accepted(ballot: r1, first: 4, skipped: [skip])),
                             Outgoing(to: ReplicaID(2), message: .decided([skip]))])
        #expect(!messages.contains { if case .accept = $0.message { true } else { false } })
    }

    @Test func aRestartedOwnerPutsNoBatchInASlotItSkippedEvenWhenNoPromiseReportsIt() {
        let config = PaxosConfig(replicaCount: 3)
        let own = Ballot(round: 0, replica: ReplicaID(0))
        var replica = PaxosReplica(config: config, id: ReplicaID(0), now: .zero,
                                   restoring: [.accepted(ballot: own, run: SlotRun(first: 0, last: 6, value: .noop))])
        // Phase 1 at 1.0. Its own promise (which would report the skip) is left out of the quorum:
        // the floor must come from the restored records alone.
        let prepare = replica.tick(now: Instant(nanoseconds: 1_000))
        let ballot = Ballot(round: 1, replica: ReplicaID(0))
        #expect(prepare.pendingMessages.contains { $0.message == .prepare(sublog: 0, ballot: ballot, fromSlot: 0) })
        var accepts: [SlotRun] = []
        for peer in [1, 2] {
            let ready = replica.receive(.promise(sublog: 0, ballot: ballot, fromSlot: 0, slots: [], complete: true), from: ReplicaID(peer), now: .zero)
            for outgoing in ready.pendingMessages { if case let .accept(b, run) = outgoing.message, b == ballot { accepts.append(run) } }
        }
        let request = replica.propose(Self.put(1, 1), now: .zero)
        for outgoing in request.pendingMessages { if case let .accept(b, run) = outgoing.message, b == ballot { accepts.append(run) } }
        #expect(Set(accepts) == [SlotRun(first: 0, last: 6, value: .noop), SlotRun(slot: 9, value: .batch([Self.put(1, 1)]))])
    }

    @Test func anAcceptBelowThePromiseIsRejectedWithThePromise() {
        var replica = PaxosReplica(config: PaxosConfig(replicaCount: 3), id: ReplicaID(1), now: .zero)
        let high = Ballot(round: 2, replica: ReplicaID(2))
        _ = replica.receive(.prepare(sublog: 0, ballot: high, fromSlot: 0), from: ReplicaID(2), now: .zero)
        let ready = replica.receive(.accept(ballot: Ballot(round: 0, replica: ReplicaID(0)), run: SlotRun(slot: 0, value: .noop)),
                                    from: ReplicaID(0), now: .zero)
        #expect(ready.records.isEmpty)
        #expect(ready.pendingMessages.map(\.message) == [.rejected(sublog: 0, promised: high)])
    }

    /// Seed 1447 (single-leader, five replicas): r2 prepared at 1.2, crashed before its own
    /// promise was durable and came back knowing only 1.1, so it takes r1 for the leader while r1
    /// and the others take r2. Heartbeats keep everyone unsuspected, so the lowest replica never
    /// calls an election; r2, whose presumed leader forwards it a request, must.
    @Test func aReplicaWhosePresumedLeaderForwardsItARequestCallsTheElectionEvenIfNotTheLowest() {
        let config = PaxosConfig(replicaCount: 5, mode: .singleLeader)
        var replicas = (0..<5).map { PaxosReplica(config: config, id: ReplicaID($0), now: .zero) }
        let lost = Ballot(round: 1, replica: ReplicaID(2)), remembered = Ballot(round: 1, replica: ReplicaID(1))
        for index in [0, 1, 3, 4] { _ = replicas[index].receive(.prepare(sublog: 0, ballot: lost, fromSlot: 0), from: ReplicaID(2), now: .zero) }
        _ = replicas[2].receive(.prepare(sublog: 0, ballot: remembered, fromSlot: 0), from: ReplicaID(1), now: .zero)
        #expect(replicas.allSatisfy { $0.leading.isEmpty })
        #expect(replicas[0].presumedLeader(ofSublog: 0) == ReplicaID(2))
        #expect(replicas[2].presumedLeader(ofSublog: 0) == ReplicaID(1))
        let forwarded = replicas[1].propose(Self.put(1, 1), now: .zero)
        #expect(forwarded.pendingMessages.map(\.message) == [.forward(Self.put(1, 1))])
        _ = replicas[2].receive(.forward(Self.put(1, 1)), from: ReplicaID(1), now: .zero)
        let later = Instant(nanoseconds: 1_000_000)
        for index in [0, 1, 3, 4] {
            #expect(!replicas[index].tick(now: later).pendingMessages.contains { if case .prepare = $0.message { true } else { false } })
        }
        let prepares = replicas[2].tick(now: later).pendingMessages.filter { if case .prepare = $0.message { true } else { false } }
        #expect(prepares.count == 5)
    }

    @Test func malformedRunsFromPeersAreIgnored() {
        var replica = PaxosReplica(config: PaxosConfig(replicaCount: 3), id: ReplicaID(1), now: .zero)
        // Slots 0 and 1 belong to different sublogs, so no run can span them.
        let ready = replica.receive(.accept(ballot: Ballot(round: 0, replica: ReplicaID(0)), run: SlotRun(first: 0, last: 1, value: .noop)),
                                    from: ReplicaID(0), now: .zero)
        #expect(ready.isEmpty)
        let far = replica.receive(.decided([SlotRun(slot: 1 << 40, value: .noop)]), from: ReplicaID(0), now: .zero)
        #expect(far.deliveries.isEmpty)
        #expect(replica.horizon == 0)
    }
}

/// Skipping ahead: an owner closes its slots before the others' batches reach them.
@Suite struct SkipAheadTests {
    /// Replica 0 of three, idle, hears replica 1 propose one batch every millisecond for `duration`
    /// and times a 20 ms round trip to both peers. Returns every skip run it sent and the highest
    /// slot known to hold a batch.
    static func idleOwnerWatchingABusyPeer(percent: Int, duration milliseconds: Int = 60,
                                           roundTripMilliseconds: Int = 20) -> (skips: [SlotRun], batchHorizon: UInt64) {
        var config = PaxosConfig(replicaCount: 3)
        config.skipAheadPercent = percent
        var replica = PaxosReplica(config: config, id: ReplicaID(0), now: .zero)
        var skips: [SlotRun] = []
        func collect(_ ready: Ready) {
            // Replica 2 proposes nothing here, so it gets every skip as a decision (replica 1
            // gets some inside acknowledgements).
            for outgoing in ready.pendingMessages where outgoing.to == ReplicaID(2) {
                if case let .decided(runs) = outgoing.message { skips += runs }
            }
        }
        let peer = Ballot(round: 0, replica: ReplicaID(1))
        var slot: UInt64 = 1
        for millisecond in 1...milliseconds {
            let now = Instant(nanoseconds: UInt64(millisecond) * 1_000_000)
            collect(replica.receive(.accept(ballot: peer, run: SlotRun(slot: slot, value: .batch([CoreTests.put(1, slot)]))),
                                    from: ReplicaID(1), now: now))
            slot += 3
            collect(replica.tick(now: now))
            // Heartbeats leave every 10 ms; each comes back from both peers a round trip later.
            if millisecond % 10 == 0, millisecond >= 10 + roundTripMilliseconds {
                let sentAt = UInt64(millisecond - roundTripMilliseconds) * 1_000
                for peer in [ReplicaID(1), ReplicaID(2)] {
                    collect(replica.receive(.heartbeatEcho(sentAtMicroseconds: sentAt), from: peer, now: now))
                }
            }
        }
        return (skips, replica.batchHorizon)
    }

    @Test func anIdleOwnerSkipsAheadOfTheBusiestPeerByAboutOneRoundTripOfItsSlots() {
        let (skips, batchHorizon) = Self.idleOwnerWatchingABusyPeer(percent: 100)
        let reach = skips.map(\.last).max() ?? 0
        // The group opens at most 3 slots per millisecond (one batch, stride 3); one way to the
        // nearest peer is 10 ms, so about 30 slots (the rate is smoothed, so somewhat less).
        // Reacting alone would stop below the last batch.
        #expect(reach > batchHorizon + 12, "skips reach \(reach), last batch below \(batchHorizon)")
        #expect(reach < batchHorizon + 45, "skips reach \(reach), last batch below \(batchHorizon)")
        // Every skip run is the owner's own sublog, in order, without overlaps.
        #expect(skips.allSatisfy { $0.first % 3 == 0 && $0.last % 3 == 0 && $0.value == .noop })
        #expect(zip(skips, skips.dropFirst()).allSatisfy { $0.last < $1.first })
    }

    @Test func withSkippingAheadOffAnOwnerSkipsOnlyBelowBatchesItHeardOf() {
        let (skips, batchHorizon) = Self.idleOwnerWatchingABusyPeer(percent: 0)
        #expect(!skips.isEmpty)
        #expect(skips.allSatisfy { $0.last < batchHorizon })
    }

    @Test func aOneWayDelayShorterThanTwoTicksIsLeftToTheSkipsThatAnswerAccepts() {
        // Ticks every millisecond, a 2 ms round trip: one way is 1 ms, under two ticks.
        let (skips, batchHorizon) = Self.idleOwnerWatchingABusyPeer(percent: 100, roundTripMilliseconds: 2)
        #expect(!skips.isEmpty)
        #expect(skips.allSatisfy { $0.last < batchHorizon })
    }

    @Test func withoutARoundTripMeasuredNothingIsSkippedAhead() {
        // 15 ms: no echo has come back yet.
        let (skips, batchHorizon) = Self.idleOwnerWatchingABusyPeer(percent: 100, duration: 15)
        #expect(skips.allSatisfy { $0.last < batchHorizon })
    }
}

/// A group restarting as a whole keeps its acceptances but no decisions.
@Suite struct WholeGroupRestartTests {
    /// Ticks the group every 30 ms and delivers every message in FIFO order until each replica has
    /// delivered `slots` slots or `steps` ticks passed; returns what each replica delivered.
    static func run(_ replicas: inout [PaxosReplica], until slots: UInt64, steps: Int) -> [[Delivery]] {
        var delivered: [[Delivery]] = Array(repeating: [], count: replicas.count)
        var queue: [(from: ReplicaID, outgoing: Outgoing)] = []
        var storages = Array(repeating: MemoryStorage(), count: replicas.count)
        for step in 1...steps where replicas.contains(where: { $0.deliveredBelow < slots }) {
            let now = Instant(nanoseconds: UInt64(step) * 30_000_000)
            for index in replicas.indices {
                let ready = replicas[index].tick(now: now)
                delivered[index] += ready.deliveries
                queue += ready.messages(persistingTo: &storages[index]).map { (ReplicaID(index), $0) }
            }
            while !queue.isEmpty {
                let (from, outgoing) = queue.removeFirst()
                let index = outgoing.to.rawValue
                let ready = replicas[index].receive(outgoing.message, from: from, now: now)
                delivered[index] += ready.deliveries
                queue += ready.messages(persistingTo: &storages[index]).map { (ReplicaID(index), $0) }
            }
        }
        return delivered
    }

    @Test func aGroupWithMoreThanAWindowOfUndecidedAcceptancesLearnsThemFromEachOther() {
        var config = PaxosConfig(replicaCount: 3)
        config.deliveryWindowSlotsMax = 64
        // Slots 0 ..< 200, each accepted by all three at its owner's round 0: chosen, but nobody
        // recorded that. 200 slots are beyond one window, so no replica may run phase 1 (its
        // report would not fit); only catching up can bring them closer.
        let slotsUsed: UInt64 = 200
        var records: [PersistRecord] = []
        for slot in 0..<slotsUsed {
            let value: SlotValue = slot % 7 == 1 ? .batch([CoreTests.put(slot, 1)]) : .noop
            records.append(.accepted(ballot: Ballot(round: 0, replica: ReplicaID(Int(slot % 3))), run: SlotRun(slot: slot, value: value)))
        }
        var replicas = (0..<3).map { PaxosReplica(config: config, id: ReplicaID($0), now: .zero, restoring: records) }
        let delivered = Self.run(&replicas, until: slotsUsed, steps: 200)
        Self.expectEveryReplicaDeliveredTheChosenBatches(replicas, delivered, slotsUsed: slotsUsed)
    }

    /// Every replica delivered the first `slotsUsed` slots, all alike, and what was chosen is what
    /// is delivered: a batch in every seventh slot from 1 (as the tests above record them), no-ops
    /// elsewhere.
    static func expectEveryReplicaDeliveredTheChosenBatches(_ replicas: [PaxosReplica], _ delivered: [[Delivery]], slotsUsed: UInt64) {
        for index in replicas.indices {
            #expect(replicas[index].deliveredBelow >= slotsUsed, "r\(index) delivered below \(replicas[index].deliveredBelow)")
            #expect(Array(delivered[index].prefix(Int(slotsUsed))) == Array(delivered[0].prefix(Int(slotsUsed))))
        }
        let batchSlots: [UInt64] = delivered[0].prefix(Int(slotsUsed)).filter { $0.value.requestCount > 0 }.map(\.slot)
        let chosenBatchSlots: [UInt64] = (0..<slotsUsed).filter { $0 % 7 == 1 }
        #expect(batchSlots == chosenBatchSlots)
    }

    @Test func skipsOnlyTheirOwnerRecordedPastTwoWindowsAreDecidedByPhaseOneInSteps() {
        var config = PaxosConfig(replicaCount: 3)
        config.deliveryWindowSlotsMax = 64
        // Slots 0 ..< 400: every seventh a batch all three accepted; the rest skips, which only
        // their owner recorded (the others learned them decided and kept nothing). No quorum at one
        // ballot shows for a skip, and 400 slots are past what one phase 1 can report (two
        // windows): phase 1 must run over what the reports cover, again and again.
        let slotsUsed: UInt64 = 400
        var records: [[PersistRecord]] = [[], [], []]
        for slot in 0..<slotsUsed {
            let owner = Int(slot % 3)
            let ballot = Ballot(round: 0, replica: ReplicaID(owner))
            if slot % 7 == 1 {
                for replica in 0..<3 { records[replica].append(.accepted(ballot: ballot, run: SlotRun(slot: slot, value: .batch([CoreTests.put(slot, 1)])))) }
            } else {
                records[owner].append(.accepted(ballot: ballot, run: SlotRun(slot: slot, value: .noop)))
            }
        }
        var replicas = (0..<3).map { PaxosReplica(config: config, id: ReplicaID($0), now: .zero, restoring: records[$0]) }
        let delivered = Self.run(&replicas, until: slotsUsed, steps: 400)
        Self.expectEveryReplicaDeliveredTheChosenBatches(replicas, delivered, slotsUsed: slotsUsed)
        for replica in replicas { #expect(replica.invariantViolations.isEmpty) }
    }

    @Test func acceptancesAtDifferentBallotsDecideNothing() {
        var config = PaxosConfig(replicaCount: 3)
        config.deliveryWindowSlotsMax = 64
        let mine = SlotRun(slot: 0, value: .noop)
        var replica = PaxosReplica(config: config, id: ReplicaID(0), now: .zero,
                                   restoring: [.accepted(ballot: Ballot(round: 0, replica: ReplicaID(0)), run: mine)])
        let theirs = ReportedSlot(slot: 0, ballot: Ballot(round: 1, replica: ReplicaID(2)), value: .batch([CoreTests.put(1, 1)]))
        let ready = replica.receive(.undecided([theirs]), from: ReplicaID(1), now: .zero)
        #expect(ready.deliveries.isEmpty && replica.deliveredBelow == 0)
        // A second acceptor at that higher ballot makes a quorum there.
        let decided = replica.receive(.undecided([theirs]), from: ReplicaID(2), now: .zero)
        #expect(decided.deliveries == [Delivery(slot: 0, value: theirs.value)])
    }
}

/// Numbers from peers that would overflow arithmetic or loop for ever are dropped, not trusted.
@Suite struct HostilePeerTests {
    static let config = PaxosConfig(replicaCount: 3)

    @Test func aPrepareFromTheEndOfTheSlotSpaceIsIgnored() {
        var replica = PaxosReplica(config: Self.config, id: ReplicaID(1), now: .zero)
        let ready = replica.receive(.prepare(sublog: 2, ballot: Ballot(round: 5, replica: ReplicaID(0)), fromSlot: UInt64.max),
                                    from: ReplicaID(0), now: .zero)
        #expect(ready.isEmpty)
    }

    @Test func aBallotRoundNearTheTopIsIgnoredSoNoElectionOverflows() {
        var replica = PaxosReplica(config: Self.config, id: ReplicaID(1), now: .zero)
        _ = replica.receive(.rejected(sublog: 2, promised: Ballot(round: UInt64.max, replica: ReplicaID(2))), from: ReplicaID(2), now: .zero)
        // Long after every peer fell silent, replica 1 revokes sublog 2 with a ballot of its own:
        // had it adopted the hostile round, the next round would have overflowed.
        _ = replica.tick(now: Instant(nanoseconds: 10_000_000_000))
        #expect(replica.presumedLeader(ofSublog: 2) == ReplicaID(1))
    }

    @Test func aPromiseReportingAFarSlotLeavesTheLeaderWithinItsWindowInsteadOfLooping() {
        var replica = PaxosReplica(config: Self.config, id: ReplicaID(0), now: .zero)
        // Replica 2 goes silent: replica 0 revokes its sublog after the suspect timeout.
        var now = Instant.zero
        var prepare: PaxosMessage?
        for _ in 0..<20 {
            now = now.adding(microseconds: 20_000)
            _ = replica.receive(.heartbeat(deliveredBelow: 0, horizon: 0, batchHorizon: 0, sentAtMicroseconds: 0), from: ReplicaID(1), now: now)
            let ready = replica.tick(now: now)
            if let found = ready.pendingMessages.first(where: { if case .prepare(2, _, _) = $0.message { true } else { false } }) {
                prepare = found.message
                break
            }
        }
        guard case let .prepare(sublog, ballot, fromSlot)? = prepare else {
            Issue.record("no revocation started")
            return
        }
        let far = ReportedSlot(slot: 3_000_000_000_002, ballot: Ballot(round: 0, replica: ReplicaID(2)), value: .noop)
        var sent: [PaxosMessage] = []
        sent += replica.receive(.promise(sublog: sublog, ballot: ballot, fromSlot: fromSlot, slots: [far], complete: true), from: ReplicaID(1), now: now)
            .pendingMessages.map(\.message)
        sent += replica.receive(.promise(sublog: sublog, ballot: ballot, fromSlot: fromSlot, slots: [], complete: true), from: ReplicaID(0), now: now)
            .pendingMessages.map(\.message)
        // The far slot is beyond what the leader may act on: it decides the slots of its window
        // only (no-ops: nobody reported anything there), and nothing near the far slot.
        #expect(replica.horizon <= Self.config.deliveryWindowSlotsMax)
        for message in sent {
            if case let .accept(_, run) = message { #expect(run.last < Self.config.deliveryWindowSlotsMax && run.value == .noop) }
        }
    }
}
