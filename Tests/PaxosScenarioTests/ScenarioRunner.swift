import Paxos
import Primitives
import Runtime
import Services
import Simulation

// A deterministic, scripted harness for one Paxos group, in the spirit of table-driven
// interaction tests: a scenario file is a list of commands, each followed by the trace it
// produced. Nothing here is random: the clock only moves on `tick`/`run`, messages wait in FIFO
// order until a command delivers them, and every collection is walked in a fixed order, so the
// same script always gives the same trace.
//
// Commands (one per line; `#` lines and blank lines are comments):
//
//   group replicas=3 mode=multi-leader batch=1 pipeline=4 [heartbeat=10ms suspect=30ms
//         retransmit=20ms delay=0ms window=64 catchup=512]
//                             builds the group at time 0 (defaults as shown)
//   open-session r0           r0 proposes `session.open` for client c0; the runner delivers
//                             everything silently and prints only the reply (sessions get
//                             ids 1, 2, 3, ...)
//   request r0 client=1 seq=1 kv.put k v
//                             a client request arriving at r0 (ops: session.open, kv.get K,
//                             kv.put K V, lock.acquire N, lock.release N, log.append E,
//                             log.retrieve FIRST LAST, log.truncate INDEX)
//   deliver [LINKS]           delivers the messages in flight right now, once each, in the order
//                             they were sent; what they cause waits for the next command
//   stabilize [brief]         delivers until nothing is in flight (the clock does not move);
//                             `brief` prints only deliveries and client replies
//   drop LINKS                discards in-flight messages
//   tick [rN] +20ms           moves the clock, then ticks every live replica (or only rN)
//   run +60ms                 moves the clock a heartbeat interval at a time; after each step
//                             every live replica ticks and the network stabilizes (printed as
//                             `tick @10ms` and `stabilize @10ms`, each when it did something)
//   crash rN                  keeps only rN's storage; messages in flight to it are lost
//   restart rN                a new replica from the stored records, at the current time
//   partition r0 | r1 r2      messages across the cut are lost (in flight now, or sent later)
//   heal                      ends the partition
//   status                    per replica: delivered prefix, horizon, sublogs it leads, digest
//   show heartbeats | hide heartbeats
//
// LINKS is `r0->r1`, `*->r1`, `r0->*`, or `r1` (every link to or from r1); none means all.
//
// Trace lines: `r0->r1 MESSAGE` is a message sent (or, as a heading under deliver, the message
// delivered, with what it caused indented below), `r1 delivers slot N: VALUE` a delivery to the
// state machine, `r0 replies c1#1: REPLY` a client answer. What one input made a replica do is
// printed as its messages, then its deliveries, then its replies (a node reports them apart, so
// their interleaving is not known). A message lost at send time carries `(lost: ...)`. Heartbeats are sent and delivered like any message, but hidden: they would
// drown the trace. A heartbeat's delivery is shown only when it caused something (such as an
// idle leader skipping its slots); `show heartbeats` prints all of them.
//
// Besides the trace, the runner checks safety on every step: replicas that deliver a slot must
// deliver the same value, each replica delivers slots in order without gaps, equal delivered
// prefixes give equal state digests, and no core reports a broken invariant. Those failures are
// reported apart from the trace, so rewriting expectations cannot hide them.

struct ScenarioError: Error, CustomStringConvertible {
    var line: Int
    var message: String
    var description: String { "line \(line): \(message)" }
}

/// A scenario file: blocks of comment lines, a command and its expected output.
struct ScenarioScript {
    struct Block {
        /// Comment and blank lines before the command, verbatim.
        var preamble: [String]
        var command: String
        /// 1-based line number of the command in the file.
        var line: Int
        /// Expected output, without the two-space indent.
        var expected: [String]
    }

    static let indent = "  "

    var blocks: [Block] = []
    /// Comment lines after the last command.
    var trailer: [String] = []

    init(parsing text: String) throws(ScenarioError) {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        var pending: [String] = []
        for (index, line) in lines.enumerated() {
            if line.hasPrefix(" ") {
                guard !blocks.isEmpty, pending.isEmpty else {
                    throw ScenarioError(line: index + 1, message: "output line without a command above it")
                }
                guard line.hasPrefix(Self.indent) else {
                    throw ScenarioError(line: index + 1, message: "output lines are indented by two spaces")
                }
                blocks[blocks.count - 1].expected.append(String(line.dropFirst(Self.indent.count)))
            } else if line.isEmpty || line.hasPrefix("#") {
                pending.append(line)
            } else {
                blocks.append(Block(preamble: pending, command: line, line: index + 1, expected: []))
                pending = []
            }
        }
        trailer = pending
    }

    /// The file with `outputs[i]` as the output of block i.
    func rendered(outputs: [[String]]) -> String {
        var lines: [String] = []
        for (block, output) in zip(blocks, outputs) {
            lines += block.preamble
            lines.append(block.command)
            lines += output.map { $0.isEmpty ? "" : Self.indent + $0 }
        }
        lines += trailer
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The simulated group the commands act on.
struct ScenarioRunner {
    private struct InFlight {
        var from: Int
        var to: Int
        var message: PaxosMessage
    }

    private var config: PaxosConfig?
    private var nodes: [ReplicaNode<MemoryStorage>?] = []
    /// The disks of crashed replicas.
    private var disks: [MemoryStorage?] = []
    private var now = Instant.zero
    private var network: [InFlight] = []
    /// The side of the partition each replica is on; nil when the network is whole.
    private var sides: [Int]?
    private var showHeartbeats = false
    private var nextOpenSequence: UInt64 = 1
    private var line = 0

    // Safety checks, independent of the expected text.
    /// Agreement, gap-free delivery and equal digests: the simulator's checker.
    private var checker = ExecutionChecker(replicaCount: 0)
    private var checkerViolationsSeen = 0
    private var violationsSeen: [Int] = []
    /// Safety problems found so far (should stay empty).
    private(set) var problems: [String] = []

    /// Runs one command line and returns its output lines.
    mutating func run(_ command: String, line: Int) throws(ScenarioError) -> [String] {
        self.line = line
        let words = command.split(separator: " ").map(String.init)
        guard let verb = words.first else { return [] }
        let args = Array(words.dropFirst())
        if verb != "group", config == nil { throw fail("the first command must be `group`") }
        var out: [String] = []
        switch verb {
        case "group": try group(args)
        case "open-session": out = try openSession(args)
        case "request": out = try request(args)
        case "deliver": out = try deliver(matching: linkFilter(args))
        case "stabilize":
            guard args.isEmpty || args == ["brief"] else { throw fail("usage: stabilize [brief]") }
            out = try stabilize()
            if args == ["brief"] { out = Self.outcomes(out) }
        case "drop": out = try drop(matching: linkFilter(args))
        case "tick": out = try tick(args)
        case "run": out = try runFor(args)
        case "crash": out = try crash(args)
        case "restart": out = try restart(args)
        case "partition": out = try partition(args)
        case "heal":
            sides = nil
        case "status": out = status()
        case "show", "hide":
            guard args == ["heartbeats"] else { throw fail("only `\(verb) heartbeats` exists") }
            showHeartbeats = verb == "show"
        default: throw fail("unknown command `\(verb)`")
        }
        out += checkInvariants()
        return out
    }

    // MARK: Commands

    private mutating func group(_ args: [String]) throws(ScenarioError) {
        guard config == nil else { throw fail("the group exists already") }
        var options = try keyValues(args)
        guard let replicas = options.removeValue(forKey: "replicas").flatMap({ Int($0) }) else { throw fail("group needs replicas=N") }
        let modeName = options.removeValue(forKey: "mode") ?? LeadershipMode.multiLeader.rawValue
        guard let mode = LeadershipMode(rawValue: modeName) else { throw fail("unknown mode \(modeName)") }
        var config = PaxosConfig(replicaCount: replicas, mode: mode)
        // Short, round timeouts keep tick-driven scenarios brief and easy to follow.
        config.batchCommandsMax = 1
        config.pipelineDepthMax = 4
        config.deliveryWindowSlotsMax = 64
        config.heartbeatIntervalMicroseconds = 10_000
        config.suspectTimeoutMicroseconds = 30_000
        config.retransmitTimeoutMicroseconds = 20_000
        config.batchDelayMicrosecondsMax = 0
        for (key, value) in options.sorted(by: { $0.key < $1.key }) {
            switch key {
            case "batch": config.batchCommandsMax = try integer(value)
            case "pipeline": config.pipelineDepthMax = try integer(value)
            case "window": config.deliveryWindowSlotsMax = UInt64(try integer(value))
            case "catchup": config.catchUpSlotsMax = try integer(value)
            case "heartbeat": config.heartbeatIntervalMicroseconds = try duration(value)
            case "suspect": config.suspectTimeoutMicroseconds = try duration(value)
            case "retransmit": config.retransmitTimeoutMicroseconds = try duration(value)
            case "delay": config.batchDelayMicrosecondsMax = try duration(value)
            default: throw fail("unknown group option \(key)")
            }
        }
        do { try config.validate() } catch { throw fail("invalid config: \(error)") }
        self.config = config
        nodes = (0..<replicas).map { makeNode($0, restoring: nil) }
        disks = Array(repeating: nil, count: replicas)
        checker = ExecutionChecker(replicaCount: replicas)
        violationsSeen = Array(repeating: 0, count: replicas)
    }

    private mutating func openSession(_ args: [String]) throws(ScenarioError) -> [String] {
        guard args.count == 1 else { throw fail("usage: open-session rN") }
        let replica = try replicaIndex(args[0])
        let request = Request(client: ClientID(0), sequence: nextOpenSequence, command: .openSession)
        nextOpenSequence += 1
        guard nodes[replica] != nil else { throw fail("\(args[0]) is down") }
        // Setup, not the subject of the scenario: run it to the end and keep only the reply.
        var lines = absorb(nodes[replica]!.clientRequest(request, now: now), at: replica)
        lines += try stabilize()
        return Self.outcomes(lines).filter { !$0.contains(" delivers ") }
    }

    /// Only what the state machines and clients saw: deliveries, replies, drops and broken
    /// invariants, without the messages that led there.
    private static func outcomes(_ lines: [String]) -> [String] {
        lines.map { String($0.drop { $0 == " " }) }.filter { line in
            line.hasPrefix("!!") || [" delivers ", " replies ", " drops "].contains { line.contains($0) && !line.contains("->") }
        }
    }

    private mutating func request(_ args: [String]) throws(ScenarioError) -> [String] {
        guard args.count >= 4 else { throw fail("usage: request rN client=C seq=S OPERATION ARGS...") }
        let replica = try replicaIndex(args[0])
        let fields = try keyValues(Array(args[1...2]))
        guard let client = fields["client"].flatMap({ UInt64($0) }), let sequence = fields["seq"].flatMap({ UInt64($0) }) else {
            throw fail("request needs client=C seq=S")
        }
        let command = try parseCommand(Array(args[3...]))
        let request = Request(client: ClientID(client), sequence: sequence, command: command)
        guard nodes[replica] != nil else { return ["\(ReplicaID(replica)) is down: \(request.compactDescription) is lost"] }
        return absorb(nodes[replica]!.clientRequest(request, now: now), at: replica)
    }

    private mutating func deliver(matching filter: (Int, Int) -> Bool) throws(ScenarioError) -> [String] {
        var chosen: [InFlight] = []
        var kept: [InFlight] = []
        for message in network {
            if filter(message.from, message.to) { chosen.append(message) } else { kept.append(message) }
        }
        network = kept
        var lines: [String] = []
        for message in chosen {
            let heading = "\(ReplicaID(message.from))->\(ReplicaID(message.to)) \(message.message)"
            guard nodes[message.to] != nil else {
                if isVisible(message.message) { lines.append(heading + " (lost: \(ReplicaID(message.to)) is down)") }
                continue
            }
            let effects = absorb(nodes[message.to]!.receive(message.message, from: ReplicaID(message.from), now: now), at: message.to)
            if isVisible(message.message) || !effects.isEmpty {
                lines.append(heading)
                lines += effects.map { ScenarioScript.indent + $0 }
            }
        }
        return lines
    }

    private mutating func stabilize() throws(ScenarioError) -> [String] {
        var lines: [String] = []
        var rounds = 0
        while !network.isEmpty {
            rounds += 1
            guard rounds <= 1_000 else { throw fail("the network did not settle after 1000 rounds") }
            lines += try deliver(matching: { _, _ in true })
        }
        return lines
    }

    private mutating func drop(matching filter: (Int, Int) -> Bool) -> [String] {
        var lines: [String] = []
        var kept: [InFlight] = []
        for message in network {
            guard filter(message.from, message.to) else {
                kept.append(message)
                continue
            }
            if isVisible(message.message) {
                lines.append("dropped \(ReplicaID(message.from))->\(ReplicaID(message.to)) \(message.message)")
            }
        }
        network = kept
        return lines
    }

    private mutating func tick(_ args: [String]) throws(ScenarioError) -> [String] {
        guard let step = args.last, args.count <= 2 else { throw fail("usage: tick [rN] +DURATION") }
        let only = args.count == 2 ? try replicaIndex(args[0]) : nil
        now = now.adding(microseconds: try advance(step))
        var lines: [String] = []
        for replica in nodes.indices where only == nil || only == replica {
            guard nodes[replica] != nil else {
                if only != nil { throw fail("\(args[0]) is down") }
                continue
            }
            lines += absorb(nodes[replica]!.tick(now: now), at: replica)
        }
        return lines
    }

    private mutating func runFor(_ args: [String]) throws(ScenarioError) -> [String] {
        guard args.count == 1 else { throw fail("usage: run +DURATION") }
        var remaining = try advance(args[0])
        let interval = config!.heartbeatIntervalMicroseconds
        var lines: [String] = []
        while remaining > 0 {
            let step = min(interval, remaining)
            remaining -= step
            now = now.adding(microseconds: step)
            // The step is shown as the commands it amounts to, each only if it did something
            // visible, so sends by ticks and deliveries of messages are told apart.
            var ticked: [String] = []
            for replica in nodes.indices where nodes[replica] != nil {
                ticked += absorb(nodes[replica]!.tick(now: now), at: replica)
            }
            if !ticked.isEmpty {
                lines.append("tick @\(Self.format(now))")
                lines += ticked.map { ScenarioScript.indent + $0 }
            }
            let delivered = try stabilize()
            if !delivered.isEmpty {
                lines.append("stabilize @\(Self.format(now))")
                lines += delivered.map { ScenarioScript.indent + $0 }
            }
        }
        return lines
    }

    private mutating func crash(_ args: [String]) throws(ScenarioError) -> [String] {
        guard args.count == 1 else { throw fail("usage: crash rN") }
        let replica = try replicaIndex(args[0])
        guard let node = nodes[replica] else { throw fail("\(args[0]) is down already") }
        disks[replica] = node.storage
        nodes[replica] = nil
        // Messages it sent are on the wire and still arrive; messages to it die with the process.
        return drop(matching: { _, to in to == replica })
    }

    private mutating func restart(_ args: [String]) throws(ScenarioError) -> [String] {
        guard args.count == 1 else { throw fail("usage: restart rN") }
        let replica = try replicaIndex(args[0])
        guard nodes[replica] == nil, let disk = disks[replica] else { throw fail("\(args[0]) is not down") }
        nodes[replica] = makeNode(replica, restoring: disk)
        disks[replica] = nil
        // A new process re-executes from slot 0 on an empty state machine.
        checker.restarted(replica: replica, fromSlot: 0)
        violationsSeen[replica] = 0
        return ["\(ReplicaID(replica)) restarts from \(disk.records.count) records:"]
            + disk.records.map { ScenarioScript.indent + Self.describe($0) }
    }

    private mutating func partition(_ args: [String]) throws(ScenarioError) -> [String] {
        var sides = Array(repeating: -1, count: nodes.count)
        var side = 0
        for word in args {
            if word == "|" {
                side += 1
            } else {
                let replica = try replicaIndex(word)
                guard sides[replica] == -1 else { throw fail("\(word) is on two sides") }
                sides[replica] = side
            }
        }
        guard side >= 1, !sides.contains(-1) else { throw fail("usage: partition r0 | r1 r2 (name every replica once)") }
        self.sides = sides
        return drop(matching: { from, to in sides[from] != sides[to] })
    }

    private func status() -> [String] {
        var lines: [String] = []
        for replica in nodes.indices {
            let name = ReplicaID(replica).description
            guard let node = nodes[replica] else {
                lines.append("\(name) down, \(disks[replica]?.records.count ?? 0) records on disk")
                continue
            }
            let core = node.core
            let leads = core.leading.keys.sorted().map { "\($0)@\(core.leading[$0]!)" }
            var text = "\(name) delivered<\(core.deliveredBelow) horizon \(core.horizon)"
                + " leads \(leads.isEmpty ? "none" : leads.joined(separator: ","))"
            if core.queuedRequests > 0 { text += " queued \(core.queuedRequests)" }
            text += " digest \(node.machine.digest)"
            lines.append(text)
        }
        if !network.isEmpty {
            let heartbeats = network.filter { !isVisible($0.message) }.count
            lines.append("in flight: \(network.count) message\(network.count == 1 ? "" : "s")"
                + (heartbeats > 0 ? " (\(heartbeats) hidden heartbeat\(heartbeats == 1 ? "" : "s"))" : ""))
        }
        return lines
    }

    // MARK: Effects

    /// Routes a node's messages into the network and renders everything it did.
    private mutating func absorb(_ output: NodeOutput, at replica: Int) -> [String] {
        let name = ReplicaID(replica)
        var lines: [String] = []
        // Memory storage is durable as soon as it is written.
        let effects = output.effects(durablePosition: nodes[replica]?.storage.durablePosition ?? output.durableAfter)
        for outgoing in effects.messages {
            let to = outgoing.to.rawValue
            var line = "\(name)->\(outgoing.to) \(outgoing.message)"
            if nodes[to] == nil {
                line += " (lost: \(outgoing.to) is down)"
            } else if let sides, sides[replica] != sides[to] {
                line += " (lost: partitioned)"
            } else {
                network.append(InFlight(from: replica, to: to, message: outgoing.message))
            }
            if isVisible(outgoing.message) { lines.append(line) }
        }
        lines += describeDeliveries(output.deliveries, at: replica)
        for reply in effects.replies {
            lines.append("\(name) replies \(reply.client)#\(reply.sequence): \(Self.describe(reply.reply))")
        }
        for request in output.dropped {
            lines.append("\(name) drops \(request.compactDescription): request queue full")
        }
        checkDeliveries(output, at: replica)
        return lines
    }

    /// One line per delivered batch; consecutive skipped slots share one line.
    private func describeDeliveries(_ deliveries: [Delivery], at replica: Int) -> [String] {
        let name = ReplicaID(replica)
        var lines: [String] = []
        var noops: ClosedRange<UInt64>?
        func flushNoops() {
            guard let range = noops else { return }
            lines.append(range.count == 1 ? "\(name) delivers slot \(range.lowerBound): noop"
                : "\(name) delivers slots \(range.lowerBound)...\(range.upperBound): noop")
            noops = nil
        }
        for delivery in deliveries {
            if case .noop = delivery.value {
                if let range = noops, range.upperBound + 1 == delivery.slot {
                    noops = range.lowerBound...delivery.slot
                } else {
                    flushNoops()
                    noops = delivery.slot...delivery.slot
                }
            } else {
                flushNoops()
                lines.append("\(name) delivers slot \(delivery.slot): \(delivery.value.compactDescription)")
            }
        }
        flushNoops()
        return lines
    }

    private func isVisible(_ message: PaxosMessage) -> Bool {
        switch message {
        case .heartbeat, .heartbeatEcho: return showHeartbeats
        default: return true
        }
    }

    // MARK: Safety checks

    private mutating func checkDeliveries(_ output: NodeOutput, at replica: Int) {
        for delivery in output.deliveries { checker.delivered(delivery, by: replica) }
        for (slot, digest) in output.digests { checker.digest(digest, atSlot: slot, by: replica) }
        for violation in checker.violations.dropFirst(checkerViolationsSeen) { problems.append("line \(line): \(violation)") }
        checkerViolationsSeen = checker.violations.count
    }

    private mutating func checkInvariants() -> [String] {
        var lines: [String] = []
        for replica in nodes.indices {
            guard let violations = nodes[replica]?.core.invariantViolations, violations.count > violationsSeen[replica] else { continue }
            for violation in violations[violationsSeen[replica]...] {
                problems.append("line \(line): \(violation)")
                lines.append("!! \(violation)")
            }
            violationsSeen[replica] = violations.count
        }
        return lines
    }

    // MARK: Parsing and formatting

    private func makeNode(_ replica: Int, restoring disk: MemoryStorage?) -> ReplicaNode<MemoryStorage> {
        // A digest after every slot lets the runner compare replicas slot by slot.
        guard let disk else {
            return ReplicaNode(core: PaxosReplica(config: config!, id: ReplicaID(replica), now: now), storage: MemoryStorage(), digestIntervalSlots: 1)
        }
        do {
            return try ReplicaNode.recover(config: config!, id: ReplicaID(replica), now: now, storage: disk, recovered: disk.recovered,
                                           digestIntervalSlots: 1)
        } catch {
            preconditionFailure("\(ReplicaID(replica)) cannot read its own checkpoint: \(error)")
        }
    }

    private func fail(_ message: String) -> ScenarioError { ScenarioError(line: line, message: message) }

    private func replicaIndex(_ word: String) throws(ScenarioError) -> Int {
        guard word.hasPrefix("r"), let index = Int(word.dropFirst()), nodes.indices.contains(index) else {
            throw fail("`\(word)` is not a replica of this group (r0 ... r\(nodes.count - 1))")
        }
        return index
    }

    private func linkFilter(_ args: [String]) throws(ScenarioError) -> (Int, Int) -> Bool {
        guard let pattern = args.first else { return { _, _ in true } }
        guard args.count == 1 else { throw fail("one link pattern at most: rA->rB, *->rB, rA->* or rN") }
        let ends = pattern.split(separator: "->", omittingEmptySubsequences: false).map(String.init)
        if ends.count == 1 {
            let replica = try replicaIndex(pattern)
            return { from, to in from == replica || to == replica }
        }
        guard ends.count == 2 else { throw fail("bad link pattern \(pattern)") }
        let from = ends[0] == "*" ? nil : try replicaIndex(ends[0])
        let to = ends[1] == "*" ? nil : try replicaIndex(ends[1])
        return { (from == nil || $0 == from) && (to == nil || $1 == to) }
    }

    private func keyValues(_ args: [String]) throws(ScenarioError) -> [String: String] {
        var result: [String: String] = [:]
        for arg in args {
            let parts = arg.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw fail("expected key=value, got \(arg)") }
            result[parts[0]] = parts[1]
        }
        return result
    }

    private func integer(_ text: String) throws(ScenarioError) -> Int {
        guard let value = Int(text) else { throw fail("\(text) is not a number") }
        return value
    }

    /// `+20ms`, `+500us`, `+1s`, in microseconds.
    private func advance(_ text: String) throws(ScenarioError) -> UInt64 {
        guard text.hasPrefix("+") else { throw fail("a time step is written +20ms") }
        return try duration(String(text.dropFirst()))
    }

    private func duration(_ text: String) throws(ScenarioError) -> UInt64 {
        for (suffix, scale) in [("ms", UInt64(1_000)), ("us", 1), ("s", 1_000_000)] where text.hasSuffix(suffix) {
            if let value = UInt64(text.dropLast(suffix.count)) { return value * scale }
        }
        throw fail("\(text) is not a duration (20ms, 500us, 1s)")
    }

    private func parseCommand(_ words: [String]) throws(ScenarioError) -> Command {
        let args = Array(words.dropFirst())
        func expect(_ count: Int) throws(ScenarioError) {
            guard args.count == count else { throw fail("\(words[0]) takes \(count) argument(s)") }
        }
        func number(_ text: String) throws(ScenarioError) -> UInt64 {
            guard let value = UInt64(text) else { throw fail("\(text) is not a number") }
            return value
        }
        switch words[0] {
        case "session.open": try expect(0); return .openSession
        case "kv.get": try expect(1); return .kvGet(key: args[0])
        case "kv.put": try expect(2); return .kvPut(key: args[0], value: args[1])
        case "lock.acquire": try expect(1); return .lockAcquire(name: args[0])
        case "lock.release": try expect(1); return .lockRelease(name: args[0])
        case "log.append": try expect(1); return .logAppend(entry: args[0])
        case "log.retrieve": try expect(2); return .logRetrieve(first: try number(args[0]), last: try number(args[1]))
        case "log.truncate": try expect(1); return .logTruncate(index: try number(args[0]))
        default: throw fail("unknown operation \(words[0])")
        }
    }

    static func format(_ instant: Instant) -> String {
        let micros = instant.nanoseconds / 1_000
        return micros % 1_000 == 0 ? "\(micros / 1_000)ms" : "\(micros)us"
    }

    static func describe(_ reply: Reply) -> String {
        switch reply {
        case let .value(value): value.map { "value \(word($0))" } ?? "no value"
        case .stored: "stored"
        case let .flag(flag): "\(flag)"
        case let .index(index): "index \(index)"
        case let .entries(first, entries): "entries from \(first) [\(entries.map(word).joined(separator: ", "))]"
        case let .session(client): "session \(client)"
        case let .extensionStep(appendedAt, applied): "extension step at \(appendedAt.map(String.init) ?? "none"), \(applied) applied"
        case let .failure(error): "failure: \(error)"
        }
    }

    /// A string as it is when it reads unambiguously, else quoted.
    static func word(_ text: String) -> String {
        let plain = !text.isEmpty && text.unicodeScalars.allSatisfy { $0.isASCII && $0.value > 0x20 && $0.value < 0x7f && $0 != "\"" }
        return plain ? text : text.debugDescription
    }

    static func describe(_ record: PersistRecord) -> String {
        switch record {
        case let .promised(sublog, ballot): "promised sublog \(sublog) ballot \(ballot)"
        case let .accepted(ballot, run): "accepted \(ballot) \(run.compactDescription)"
        }
    }
}
