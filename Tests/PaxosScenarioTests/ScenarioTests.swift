import Foundation
import Testing

// Each test runs one script from testdata/ and compares the trace it produces with the one
// written in the file. To accept new traces after a deliberate change, run with
// CSMR_REWRITE_SCENARIOS=1, which rewrites the files, then review the diff like any code change:
//
//   CSMR_REWRITE_SCENARIOS=1 swift test --filter PaxosScenarioTests
//
// Safety checks (agreement, gap-free delivery, equal digests, core invariants) fail a test even
// in rewrite mode: a trace that breaks them must never become the expectation.

@Suite("Paxos scenarios")
struct ScenarioTests {
    @Test("A request at one replica is accepted by a quorum, decided, delivered in slot order everywhere and answered")
    func normalCase() throws { try ScenarioFile("normal-case.txt").check() }

    @Test("Idle leaders skip their slots with no-op runs so a busy leader's slots can be delivered")
    func idleLeaderSkip() throws { try ScenarioFile("idle-leader-skip.txt").check() }

    @Test("A crashed leader's sublog is revoked by the lowest live replica and regained after restart")
    func leaderCrashMultiLeader() throws { try ScenarioFile("leader-crash-multi-leader.txt").check() }

    @Test("When the single leader crashes, the next replica takes over with a higher ballot")
    func leaderCrashSingleLeader() throws { try ScenarioFile("leader-crash-single-leader.txt").check() }

    @Test("A request sent twice, also to a second replica, is executed once and the retry gets the stored reply")
    func duplicateRequest() throws { try ScenarioFile("duplicate-request.txt").check() }

    @Test("A minority side cannot decide, and after the partition heals every replica delivers the same slots")
    func partitionAndHeal() throws { try ScenarioFile("partition-and-heal.txt").check() }

    @Test("An owner's skip racing a revocation of its sublog: the revoker puts the same no-op in the skipped slot")
    func skipRacesRevocation() throws { try ScenarioFile("skip-races-revocation.txt").check() }

    @Test("An owner restarting after it skipped never puts a client batch in a slot it skipped, and skips without a round at its new ballot")
    func ownerRestartAfterSkip() throws { try ScenarioFile("owner-restart-after-skip.txt").check() }

    @Test("Every scenario file in testdata is run by a test")
    func everyFileIsCovered() throws {
        let covered: Set<String> = [
            "normal-case.txt", "idle-leader-skip.txt", "leader-crash-multi-leader.txt", "leader-crash-single-leader.txt",
            "duplicate-request.txt", "partition-and-heal.txt", "skip-races-revocation.txt", "owner-restart-after-skip.txt",
        ]
        let present = try FileManager.default.contentsOfDirectory(atPath: ScenarioFile.directory.path)
            .filter { $0.hasSuffix(".txt") }
        #expect(Set(present) == covered)
    }
}

/// One scenario file, run and compared (or rewritten).
struct ScenarioFile {
    /// Found from this source file's path, not from bundle resources: rewrite mode edits the
    /// files in the source tree.
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("testdata")

    static var rewriting: Bool { ProcessInfo.processInfo.environment["CSMR_REWRITE_SCENARIOS"] == "1" }

    let name: String
    var url: URL { Self.directory.appendingPathComponent(name) }

    init(_ name: String) { self.name = name }

    func check() throws {
        let expectedText = try String(contentsOf: url, encoding: .utf8)
        let script = try ScenarioScript(parsing: expectedText)
        var runner = ScenarioRunner()
        var outputs: [[String]] = []
        for block in script.blocks {
            do {
                outputs.append(try runner.run(block.command, line: block.line))
            } catch {
                Issue.record("\(name):\(error.line): \(error.message)", sourceLocation: location(line: error.line))
                return
            }
        }
        for problem in runner.problems {
            Issue.record("\(name): safety: \(problem)")
        }
        let actualText = script.rendered(outputs: outputs)
        guard actualText != expectedText else { return }
        if Self.rewriting {
            try actualText.write(to: url, atomically: true, encoding: .utf8)
            return
        }
        let expectedLines = Self.lines(expectedText)
        let actualLines = Self.lines(actualText)
        let (diff, firstLine) = Self.unifiedDiff(expected: expectedLines, actual: actualLines, name: name)
        Issue.record(
            "\(name): the trace differs from the file (- expected, + actual; rerun with CSMR_REWRITE_SCENARIOS=1 to accept):\n\(diff)",
            sourceLocation: location(line: firstLine))
    }

    private func location(line: Int) -> SourceLocation {
        SourceLocation(fileID: "PaxosScenarioTests/\(name)", filePath: url.path, line: max(1, line), column: 1)
    }

    static func lines(_ text: String) -> [String] {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return lines
    }

    /// A line diff with two lines of context around each change, each hunk headed by the line of
    /// the expected file it starts at. Also returns the first changed line.
    static func unifiedDiff(expected: [String], actual: [String], name: String) -> (String, Int) {
        // Longest common subsequence table: files are a few hundred lines, so O(n·m) is fine.
        let n = expected.count, m = actual.count
        var common = Array(repeating: Array(repeating: 0, count: m + 1), count: n + 1)
        for i in stride(from: n - 1, through: 0, by: -1) {
            for j in stride(from: m - 1, through: 0, by: -1) {
                common[i][j] = expected[i] == actual[j] ? common[i + 1][j + 1] + 1 : max(common[i + 1][j], common[i][j + 1])
            }
        }
        enum Edit { case same(Int, String), removed(Int, String), added(Int, String) }
        var edits: [Edit] = []
        var i = 0, j = 0
        while i < n || j < m {
            if i < n, j < m, expected[i] == actual[j] {
                edits.append(.same(i, expected[i])); i += 1; j += 1
            } else if i < n, j == m || common[i + 1][j] >= common[i][j + 1] {
                edits.append(.removed(i, expected[i])); i += 1
            } else {
                edits.append(.added(i, actual[j])); j += 1
            }
        }
        let changed = edits.indices.filter { if case .same = edits[$0] { false } else { true } }
        var output: [String] = []
        var firstLine = 0
        var index = 0
        while index < changed.count {
            // Group changes closer than five lines into one hunk.
            var end = index
            while end + 1 < changed.count, changed[end + 1] - changed[end] <= 5 { end += 1 }
            let from = max(0, changed[index] - 2), to = min(edits.count - 1, changed[end] + 2)
            let startLine: Int = switch edits[from] {
            case let .same(line, _), let .removed(line, _), let .added(line, _): line + 1
            }
            if firstLine == 0 {
                firstLine = switch edits[changed[index]] {
                case let .same(line, _), let .removed(line, _), let .added(line, _): line + 1
                }
            }
            output.append("@@ \(name):\(startLine) @@")
            for edit in edits[from...to] {
                switch edit {
                case let .same(_, text): output.append(" \(text)")
                case let .removed(_, text): output.append("-\(text)")
                case let .added(_, text): output.append("+\(text)")
                }
            }
            index = end + 1
        }
        return (output.joined(separator: "\n"), firstLine)
    }
}
