import ArgumentParser
import Primitives
import Services
import Wire

/// Drives the three services on three in-process replicas, every request through the wire codec,
/// and shows that the replicas agree.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Drive the lock, key-value and log services on three in-process replicas and print what happened."
    )

    @Option(help: "Replicas to run (at least 1).")
    var replicas = 3

    func validate() throws {
        guard replicas >= 1 else { throw ValidationError("--replicas must be at least 1, got \(replicas)") }
    }

    func run() throws {
        let alice = ClientID(1), bob = ClientID(2)
        let script: [(String, Request)] = [
            ("alice opens a session", Request(client: ClientID(1001), sequence: 1, command: .openSession)),
            ("bob opens a session", Request(client: ClientID(1002), sequence: 1, command: .openSession)),
            ("alice puts x=1", Request(client: alice, sequence: 1, command: .kvPut(key: "x", value: "1"))),
            ("bob reads x", Request(client: bob, sequence: 1, command: .kvGet(key: "x"))),
            ("bob reads an unknown key", Request(client: bob, sequence: 2, command: .kvGet(key: "nope"))),
            ("alice acquires lock L", Request(client: alice, sequence: 2, command: .lockAcquire(name: "L"))),
            ("bob tries lock L", Request(client: bob, sequence: 3, command: .lockAcquire(name: "L"))),
            ("bob releases L (not his)", Request(client: bob, sequence: 4, command: .lockRelease(name: "L"))),
            ("alice releases L", Request(client: alice, sequence: 3, command: .lockRelease(name: "L"))),
            ("alice appends a", Request(client: alice, sequence: 4, command: .logAppend(entry: "a"))),
            ("alice retries that append", Request(client: alice, sequence: 4, command: .logAppend(entry: "a"))),
            ("bob appends b", Request(client: bob, sequence: 5, command: .logAppend(entry: "b"))),
            ("bob retrieves 0...1", Request(client: bob, sequence: 6, command: .logRetrieve(first: 0, last: 1))),
            ("alice truncates below 1", Request(client: alice, sequence: 5, command: .logTruncate(index: 1))),
            ("bob retrieves 0...1 again", Request(client: bob, sequence: 7, command: .logRetrieve(first: 0, last: 1))),
            ("alice truncates past the end", Request(client: alice, sequence: 6, command: .logTruncate(index: 9))),
        ]
        var machines = Array(repeating: StateMachine(), count: replicas)
        print("csmr demo: \(replicas) replicas, \(script.count) requests, allocator \(BuildInfo.allocatorDescription)")
        for (label, request) in script {
            // Every replica decodes its own copy of the frame, as it would off the network.
            let frame = WireFormat.encode(.request(request))
            var replies: [Reply] = []
            for index in machines.indices {
                guard case let .request(decoded) = try WireFormat.decode(frame) else {
                    throw ValidationError("frame did not decode as a request")
                }
                replies.append(machines[index].apply(decoded))
            }
            let agreed = Set(replies).count == 1 ? "" : "  DISAGREEMENT: \(replies)"
            print("  \(label.padded(to: 30)) \(request.command.operationName.padded(to: 13)) -> \(describe(replies[0]))\(agreed)")
        }
        let digests = machines.map(\.digest)
        print("state digests: \(digests.map(\.description).joined(separator: " "))")
        guard Set(digests).count == 1 else { throw ExitCode.failure }
        print("replicas agree: log retains \(machines[0].log.retained), \(machines[0].kv.entries.count) key(s), \(machines[0].locks.holders.count) lock(s) held")
    }

    private func describe(_ reply: Reply) -> String {
        switch reply {
        case let .value(value): value.map { "\"\($0)\"" } ?? "nil"
        case .stored: "stored"
        case let .flag(flag): "\(flag)"
        case let .index(index): "index \(index)"
        case let .entries(first, entries): "entries from \(first): \(entries)"
        case let .failure(error): "error: \(error)"
        case let .session(client): "session \(client)"
        case let .extensionStep(appendedAt, applied): "extension step at \(appendedAt.map(String.init) ?? "none"), \(applied) applied"
        }
    }
}
