// The consensus core alone: three `PaxosReplica`s in one process, no clock, disk or socket.
//
// One benchmark per leadership mode × batch size. Each iteration starts three fresh replicas,
// proposes `commandsPerIteration` client requests spread over the leaders (every replica in
// multi-leader mode, replica 0 in single-leader mode), then pumps messages between the replicas
// through one FIFO queue until every replica has delivered every request. Only the proposing and
// pumping are measured; creating and dropping the replicas are not.
//
// `commandsPerIteration` equals the scaling factor (`.mega`), so package-benchmark reports
// throughput in decided commands per second and the other metrics per command.

import Benchmark
import Paxos
import Primitives
import Services

let benchmarks: @Sendable () -> Void = {
    // Requests per iteration: one "scaled iteration" is one decided command.
    let commandsPerIteration = BenchmarkScalingFactor.mega.rawValue
    let requests = makeRequests(count: commandsPerIteration)

    for mode in [LeadershipMode.multiLeader, .singleLeader] {
        for batch in [1, 64, 1024] {
            var config = PaxosConfig(replicaCount: 3, mode: mode)
            config.batchCommandsMax = batch
            // 0: a batch is sent whenever the pipeline has room. All requests are proposed before
            // any message is delivered, so once the first `pipelineDepthMax` batches (one request
            // each) are out, every later batch is full.
            config.batchDelayMicrosecondsMax = 0
            config.pipelineDepthMax = 16
            config.requestQueueMax = commandsPerIteration
            // Never the bound that stops a leader here: the pipeline is.
            config.deliveryWindowSlotsMax = 1 << 20
            let groupConfig = config

            Benchmark(
                "Paxos \(mode.rawValue) batch \(batch)",
                configuration: .init(
                    metrics: [.wallClock, .throughput, .cpuTotal, .mallocCountTotal, .peakMemoryResident],
                    // Raw counts, not K/M: with `--scale` (per iteration = per 10⁶ commands) this
                    // gives the fractional allocations per command that the per-command row rounds.
                    units: [.mallocCountTotal: .count],
                    warmupIterations: 1,
                    scalingFactor: .mega,
                    maxDuration: .seconds(25),
                    maxIterations: 30
                )
            ) { benchmark in
                var group = Group(config: groupConfig)
                benchmark.startMeasurement()
                group.run(requests)
                benchmark.stopMeasurement()
                group.check(expected: requests.count)
                blackHole(group)
            }
        }
    }
}

/// kvPut requests with 100-byte values; (client, sequence) distinct, sequences unique per client.
private func makeRequests(count: Int) -> [Request] {
    let clients = 64
    let value = String(repeating: "v", count: 100)
    return (0..<count).map { index in
        Request(
            client: ClientID(UInt64(index % clients)),
            sequence: UInt64(index / clients) + 1,
            command: .kvPut(key: "key-\(index % 4_096)", value: value)
        )
    }
}

/// Three replicas, their in-memory storage, and the messages in flight.
private struct Group {
    var replicas: [PaxosReplica]
    var storages: [MemoryStorage]
    /// The FIFO queue as two arrays: every message of `current` is handed over, in order, before
    /// any message it produced (those go to `next`), and so on.
    var current: [(from: ReplicaID, outgoing: Outgoing)] = []
    var next: [(from: ReplicaID, outgoing: Outgoing)] = []
    var delivered: [Int]
    var leaders: [Int]
    let now = Instant.zero

    init(config: PaxosConfig) {
        replicas = (0..<config.replicaCount).map { PaxosReplica(config: config, id: ReplicaID($0), now: .zero) }
        storages = Array(repeating: MemoryStorage(), count: config.replicaCount)
        delivered = Array(repeating: 0, count: config.replicaCount)
        leaders = config.mode == .multiLeader ? Array(0..<config.replicaCount) : [0]
    }

    mutating func run(_ requests: [Request]) {
        for (index, request) in requests.enumerated() {
            let leader = leaders[index % leaders.count]
            let ready = replicas[leader].propose(request, now: now)
            handle(ready, at: leader)
        }
        while !next.isEmpty {
            swap(&current, &next)
            for (from, outgoing) in current {
                let to = outgoing.to.rawValue
                let ready = replicas[to].receive(outgoing.message, from: from, now: now)
                handle(ready, at: to)
            }
            current.removeAll(keepingCapacity: true)
        }
    }

    private mutating func handle(_ ready: consuming Ready, at replica: Int) {
        for delivery in ready.deliveries { delivered[replica] += delivery.value.requestCount }
        let sender = ReplicaID(replica)
        for outgoing in ready.messages(persistingTo: &storages[replica]) {
            next.append((sender, outgoing))
        }
    }

    func check(expected: Int) {
        for (replica, count) in delivered.enumerated() where count != expected {
            fatalError("replica \(replica) delivered \(count) of \(expected) requests")
        }
        for replica in replicas where !replica.invariantViolations.isEmpty {
            fatalError("replica \(replica.id): \(replica.invariantViolations)")
        }
    }
}
