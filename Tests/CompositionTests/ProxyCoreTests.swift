import Composition
import Primitives
import Services
import Testing

private typealias Directive = ProxyCore.Directive

private func spec(groups count: Int) -> CompositionSpec {
    let services: [[ServiceKind]] = count == 1 ? [[.kv, .lock, .log]] : [[.kv], [.lock, .log]]
    let groups = services.enumerated().map { index, services in
        CompositionSpec.Group(name: "g\(index)", replicas: 3, toleratedFailures: 1, mode: .multiLeader, services: services)
    }
    return CompositionSpec(name: "test", groups: groups, extendPutsIntoLog: false, partition: nil)
}

private let nonce = ClientID(ClientID.nonceRange.lowerBound + 7)

private func core(groups: Int = 1, timeoutNanoseconds: UInt64 = 100, waitingMax: Int = 8) -> ProxyCore {
    ProxyCore(nonce: nonce, router: Router(spec: spec(groups: groups)),
              config: .init(replicaCounts: Array(repeating: 3, count: groups), retryTimeoutNanoseconds: timeoutNanoseconds,
                            waitingCommandsMax: waitingMax))
}

private func sent(_ directives: [Directive]) -> [Request] {
    directives.compactMap { if case let .send(request, _, _) = $0 { request } else { nil } }
}

/// Opens the session of group 0 as `session`, and returns the directives that followed.
private func open(_ core: inout ProxyCore, as session: UInt64, group: Int = 0, now: UInt64 = 0) -> [Directive] {
    let request = core.outstanding(ofGroup: group)!
    #expect(request.command == .openSession)
    return core.receive(ClientReply(client: request.client, sequence: request.sequence, reply: .session(ClientID(session))), group: group,
                        nowNanoseconds: now)
}

@Suite struct ProxyCoreTests {
    @Test func theFirstCommandOpensASessionThenGoesOutWithSequenceOne() {
        var proxy = core()
        let submission = proxy.submit(.kvPut(key: "k", value: "v"), nowNanoseconds: 0)
        #expect(submission.directives == [.send(Request(client: nonce, sequence: 1, command: .openSession), group: 0, replica: 0)])
        let after = open(&proxy, as: 5)
        let put = Request(client: ClientID(5), sequence: 1, command: .kvPut(key: "k", value: "v"))
        #expect(after == [.send(put, group: 0, replica: 0)])
        let done = proxy.receive(ClientReply(client: ClientID(5), sequence: 1, reply: .stored), group: 0, nowNanoseconds: 1)
        #expect(done == [.completed(submission.operation, put, .stored)])
        #expect(proxy.isIdle)
    }

    @Test func commandsOfOneGroupWaitForTheOutstandingOneAndTakeTheNextSequences() {
        var proxy = core()
        let first = proxy.submit(.logAppend(entry: "a"), nowNanoseconds: 0)
        let second = proxy.submit(.logAppend(entry: "b"), nowNanoseconds: 0)
        #expect(second.directives.isEmpty)
        #expect(sent(open(&proxy, as: 9)).map(\.sequence) == [1])
        let next = proxy.receive(ClientReply(client: ClientID(9), sequence: 1, reply: .index(0)), group: 0, nowNanoseconds: 1)
        #expect(next.count == 2)
        #expect(next.first == .completed(first.operation, Request(client: ClientID(9), sequence: 1, command: .logAppend(entry: "a")), .index(0)))
        #expect(sent(next) == [Request(client: ClientID(9), sequence: 2, command: .logAppend(entry: "b"))])
        // A duplicate of the first reply is not the second's.
        #expect(proxy.receive(ClientReply(client: ClientID(9), sequence: 1, reply: .index(0)), group: 0, nowNanoseconds: 2).isEmpty)
        let last = proxy.receive(ClientReply(client: ClientID(9), sequence: 2, reply: .index(1)), group: 0, nowNanoseconds: 3)
        #expect(last == [.completed(second.operation, Request(client: ClientID(9), sequence: 2, command: .logAppend(entry: "b")), .index(1))])
    }

    @Test func anUnansweredRequestIsResentUnchangedToTheNextReplicaAfterTheTimeout() {
        var proxy = core(timeoutNanoseconds: 100)
        _ = proxy.submit(.kvGet(key: "k"), nowNanoseconds: 0)
        _ = open(&proxy, as: 3, now: 10)
        let request = proxy.outstanding(ofGroup: 0)!
        #expect(proxy.nextDeadlineNanoseconds == 110)
        #expect(proxy.tick(nowNanoseconds: 109).isEmpty)
        #expect(proxy.tick(nowNanoseconds: 110) == [.send(request, group: 0, replica: 1)])
        #expect(proxy.tick(nowNanoseconds: 210) == [.send(request, group: 0, replica: 2)])
        #expect(proxy.tick(nowNanoseconds: 310) == [.send(request, group: 0, replica: 0)])
    }

    @Test func aRedirectMovesTheTargetAndResendsButTwoReplicasCannotBounceItForEver() {
        var proxy = core()
        _ = proxy.submit(.kvGet(key: "k"), nowNanoseconds: 0)
        _ = open(&proxy, as: 3)
        let request = proxy.outstanding(ofGroup: 0)!
        func redirect(to replica: Int?) -> [Directive] {
            proxy.redirected(client: request.client, sequence: request.sequence, group: 0, toReplica: replica, nowNanoseconds: 5)
        }
        #expect(redirect(to: 2) == [.send(request, group: 0, replica: 2)])
        #expect(proxy.target(ofGroup: 0) == 2)
        #expect(redirect(to: 2).isEmpty, "already there")
        #expect(redirect(to: nil).isEmpty, "no hint: wait for the timeout")
        #expect(redirect(to: 7).isEmpty, "no such replica")
        #expect(redirect(to: 0).count == 1)
        #expect(redirect(to: 2).count == 1)
        #expect(redirect(to: 0).isEmpty, "three redirects in a row, for three replicas")
        #expect(proxy.tick(nowNanoseconds: 105) == [.send(request, group: 0, replica: 0)])
        #expect(redirect(to: 2).count == 1, "a timeout starts a new round")
    }

    @Test func sessionExpiredCompletesTheCommandAndTheNextOneReopensWithANewSequence() {
        var proxy = core()
        let first = proxy.submit(.kvGet(key: "k"), nowNanoseconds: 0)
        _ = open(&proxy, as: 3)
        let request = proxy.outstanding(ofGroup: 0)!
        let expired = proxy.receive(ClientReply(client: ClientID(3), sequence: 1, reply: .failure(.sessionExpired)), group: 0, nowNanoseconds: 1)
        #expect(expired == [.completed(first.operation, request, .failure(.sessionExpired))])
        #expect(proxy.session(ofGroup: 0) == nil)
        let again = proxy.submit(.kvGet(key: "k"), nowNanoseconds: 2)
        #expect(sent(again.directives) == [Request(client: nonce, sequence: 2, command: .openSession)])
        #expect(sent(open(&proxy, as: 4)) == [Request(client: ClientID(4), sequence: 1, command: .kvGet(key: "k"))])
    }

    @Test func aDeadlineFailsAWaitingCommandUnsentAndAnOutstandingOneSent() {
        var proxy = core(timeoutNanoseconds: 1_000)
        let first = proxy.submit(.kvPut(key: "a", value: "1"), nowNanoseconds: 0, deadlineNanoseconds: 50)
        let second = proxy.submit(.kvPut(key: "b", value: "2"), nowNanoseconds: 0, deadlineNanoseconds: 20)
        _ = open(&proxy, as: 3)
        #expect(proxy.nextDeadlineNanoseconds == 20)
        #expect(proxy.tick(nowNanoseconds: 20) == [.failed(second.operation, .kvPut(key: "b", value: "2"), .timedOut(sent: false))])
        #expect(proxy.tick(nowNanoseconds: 50) == [.failed(first.operation, .kvPut(key: "a", value: "1"), .timedOut(sent: true))])
        // The timed-out sequence is never reused.
        let third = proxy.submit(.kvGet(key: "a"), nowNanoseconds: 60)
        #expect(sent(third.directives) == [Request(client: ClientID(3), sequence: 2, command: .kvGet(key: "a"))])
        #expect(proxy.receive(ClientReply(client: ClientID(3), sequence: 1, reply: .stored), group: 0, nowNanoseconds: 61).isEmpty)
    }

    @Test func anOpeningNobodyWaitsForAnyMoreIsAbandoned() {
        var proxy = core(timeoutNanoseconds: 1_000)
        _ = proxy.submit(.kvGet(key: "k"), nowNanoseconds: 0, deadlineNanoseconds: 10)
        #expect(proxy.tick(nowNanoseconds: 10).count == 1)
        #expect(proxy.isIdle)
        #expect(proxy.nextDeadlineNanoseconds == nil)
    }

    @Test func eachGroupHasItsOwnSessionAndSequences() {
        var proxy = core(groups: 2)
        let put = proxy.submit(.kvPut(key: "k", value: "v"), nowNanoseconds: 0)
        let append = proxy.submit(.logAppend(entry: "e"), nowNanoseconds: 0)
        #expect(put.directives == [.send(Request(client: nonce, sequence: 1, command: .openSession), group: 0, replica: 0)])
        #expect(append.directives == [.send(Request(client: nonce, sequence: 1, command: .openSession), group: 1, replica: 0)])
        #expect(sent(open(&proxy, as: 1, group: 1)) == [Request(client: ClientID(1), sequence: 1, command: .logAppend(entry: "e"))])
        #expect(sent(open(&proxy, as: 1, group: 0)) == [Request(client: ClientID(1), sequence: 1, command: .kvPut(key: "k", value: "v"))])
        #expect(proxy.owns(ClientID(1), group: 0) && proxy.owns(nonce, group: 1) && !proxy.owns(ClientID(2), group: 0))
    }

    @Test func anUnreachableReplicaIsLeftAtOnceWithTheOutstandingRequest() {
        var proxy = core(timeoutNanoseconds: 1_000)
        _ = proxy.submit(.kvGet(key: "k"), nowNanoseconds: 0)
        _ = open(&proxy, as: 3)
        let request = proxy.outstanding(ofGroup: 0)!
        #expect(proxy.unreachable(group: 0, replica: 2, nowNanoseconds: 5).isEmpty, "not where the request went")
        #expect(proxy.unreachable(group: 0, replica: 0, nowNanoseconds: 5) == [.send(request, group: 0, replica: 1)])
        #expect(proxy.nextDeadlineNanoseconds == 1_005)
        var single = ProxyCore(nonce: nonce, router: Router(spec: spec(groups: 1)), config: .init(replicaCounts: [1]))
        _ = single.submit(.kvGet(key: "k"), nowNanoseconds: 0)
        #expect(single.unreachable(group: 0, replica: 0, nowNanoseconds: 5).isEmpty, "nowhere else to go")
    }

    @Test func sessionsCanBeOpenedAheadOfTheFirstCommand() {
        var proxy = core(groups: 2, timeoutNanoseconds: 100)
        let opening = proxy.openSessions(nowNanoseconds: 0)
        #expect(sent(opening).map(\.command) == [.openSession, .openSession])
        #expect(proxy.openSessions(nowNanoseconds: 1).isEmpty, "already opening")
        // Not abandoned for want of a command: retried instead.
        #expect(sent(proxy.tick(nowNanoseconds: 100)).count == 2)
        _ = open(&proxy, as: 4, group: 0)
        #expect(!proxy.sessionsOpen)
        _ = open(&proxy, as: 4, group: 1)
        #expect(proxy.sessionsOpen && proxy.isIdle)
        let put = proxy.submit(.kvPut(key: "k", value: "v"), nowNanoseconds: 2)
        #expect(sent(put.directives) == [Request(client: ClientID(4), sequence: 1, command: .kvPut(key: "k", value: "v"))])
    }

    @Test func commandsBeyondTheWaitingBoundFailAtOnce() {
        var proxy = core(waitingMax: 2)
        _ = proxy.submit(.kvGet(key: "a"), nowNanoseconds: 0)
        _ = proxy.submit(.kvGet(key: "b"), nowNanoseconds: 0)
        let third = proxy.submit(.kvGet(key: "c"), nowNanoseconds: 0)
        #expect(third.directives == [.failed(third.operation, .kvGet(key: "c"), .queueFull)])
    }

    @Test func nonceRangesAreDisjoint() {
        var random = SplitMix64(seed: 1)
        for _ in 0..<1_000 {
            let nonce = ClientID.nonce(using: &random)
            #expect(nonce.isNonce && !ClientID.sessionRange.contains(nonce.rawValue) && !ClientID.extensionRange.contains(nonce.rawValue))
        }
        #expect(ExtensionForwarder.client(origin: 3) == ClientID.extensionClient(origin: 3))
        #expect(ClientID.sessionRange.upperBound <= ClientID.extensionRange.lowerBound)
    }

    /// Property: over a network that loses, duplicates and delays messages, with replicas that
    /// sometimes answer and sometimes redirect, every command completes once with the reply the
    /// group's state machine gave it, and executes there exactly once.
    @Test(arguments: 0..<40) func everyCommandExecutesExactlyOnceOverALossyNetwork(seed: UInt64) {
        var random = SplitMix64(seed: seed)
        let groupCount = 1 + Int(seed % 2)
        var proxy = ProxyCore(nonce: .nonce(using: &random), router: Router(spec: spec(groups: groupCount)),
                              config: .init(replicaCounts: Array(repeating: 3, count: groupCount), retryTimeoutNanoseconds: 30))
        // One state machine per group: its replicas agree, which is what consensus provides.
        var machines = Array(repeating: StateMachine(), count: groupCount)
        var inFlight: [(deliverAt: UInt64, group: Int, message: Either)] = []
        var expected: [ProxyCore.OperationID: Command] = [:]
        var completed: [ProxyCore.OperationID: Reply] = [:]
        var now: UInt64 = 0

        func carryOut(_ directives: [Directive]) {
            for directive in directives {
                switch directive {
                case let .send(request, group, _):
                    guard !random.chance(0.3) else { continue }
                    for _ in 0..<(random.chance(0.2) ? 2 : 1) {
                        inFlight.append((now + 1 + random.next() % 40, group, .request(request)))
                    }
                case let .completed(operation, request, reply):
                    #expect(completed[operation] == nil, "completed twice")
                    #expect(expected[operation] == request.command)
                    completed[operation] = reply
                case let .failed(operation, command, failure):
                    Issue.record("\(operation) \(command) failed: \(failure)")
                }
            }
        }
        for step in 0..<400 {
            now += 1 + random.next() % 5
            if step < 150, random.chance(0.3) {
                let command: Command = random.chance(0.5) ? .logAppend(entry: "e\(step)") : .kvPut(key: "k\(step % 3)", value: "v\(step)")
                let submission = proxy.submit(command, nowNanoseconds: now)
                expected[submission.operation] = command
                carryOut(submission.directives)
            }
            inFlight.sort { $0.deliverAt < $1.deliverAt }
            while let first = inFlight.first, first.deliverAt <= now {
                inFlight.removeFirst()
                switch first.message {
                case let .request(request):
                    if random.chance(0.1) {
                        inFlight.append((now + 1, first.group, .redirect(request, Int(random.next() % 3))))
                    } else {
                        let reply = machines[first.group].apply(request)
                        if !random.chance(0.3) {
                            inFlight.append((now + 1 + random.next() % 40, first.group,
                                             .reply(ClientReply(client: request.client, sequence: request.sequence, reply: reply))))
                        }
                    }
                case let .reply(reply): carryOut(proxy.receive(reply, group: first.group, nowNanoseconds: now))
                case let .redirect(request, replica):
                    carryOut(proxy.redirected(client: request.client, sequence: request.sequence, group: first.group, toReplica: replica,
                                              nowNanoseconds: now))
                }
            }
            carryOut(proxy.tick(nowNanoseconds: now))
        }
        for _ in 0..<10_000 where !proxy.isIdle || !inFlight.isEmpty {
            now += 10
            while let index = inFlight.firstIndex(where: { $0.deliverAt <= now }) {
                let message = inFlight.remove(at: index)
                switch message.message {
                case let .request(request):
                    let reply = machines[message.group].apply(request)
                    carryOut(proxy.receive(ClientReply(client: request.client, sequence: request.sequence, reply: reply), group: message.group,
                                           nowNanoseconds: now))
                case let .reply(reply): carryOut(proxy.receive(reply, group: message.group, nowNanoseconds: now))
                case .redirect: break
                }
            }
            carryOut(proxy.tick(nowNanoseconds: now))
        }
        #expect(proxy.isIdle)
        #expect(completed.count == expected.count)
        // Exactly once: the log holds each append once, in completion order of the indices.
        let appends = expected.filter { if case .logAppend = $0.value { true } else { false } }
        let logGroup = groupCount - 1
        let logLength = machines[logGroup].log.count
        #expect(logLength == appends.count)
        for (operation, command) in appends {
            guard case let .logAppend(entry) = command, case let .index(index)? = completed[operation] else {
                Issue.record("\(operation) has no index")
                continue
            }
            #expect(machines[logGroup].log.entry(at: index) == entry)
        }
    }
}

private enum Either {
    case request(Request)
    case reply(ClientReply)
    case redirect(Request, Int)
}
