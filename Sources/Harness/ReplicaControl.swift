import Foundation

/// The control file through which a harness tells a running `csmr replica` which peers of its
/// group to cut off (a partition), read when the replica starts and on SIGUSR2.
///
/// Why a file and a signal rather than a request on a port: only a process of the same user (or
/// root) can write the file in the run folder and signal the replica, so no client or peer on the
/// network can forge a partition. The harness writes the file whole (to a temporary name, then
/// renamed), so the replica never reads half of it; several signals in a row coalesce harmlessly,
/// since the replica only ever applies the file's latest contents.
///
/// Format (UTF-8 text, at most `bytesMax` bytes): lines starting with `#` and blank lines are
/// ignored; exactly one line `blocked:` followed by the peer ids to cut off, separated by spaces
/// (none: the replica is healed). For example `blocked: 0 2`.
public struct ReplicaControl: Hashable, Sendable {
    /// The peers (replica ids of the same group) whose frames are dropped both ways.
    public var blockedPeers: Set<Int>

    public static let bytesMax = 4_096

    public init(blockedPeers: Set<Int> = []) {
        self.blockedPeers = blockedPeers
    }

    /// The file's text.
    public var text: String {
        "# csmr replica control: peers this replica drops every frame to and from (written by the harness).\n"
            + "blocked:" + blockedPeers.sorted().map { " \($0)" }.joined() + "\n"
    }

    /// Parses a control file of replica `replica` in a group of `replicas`. A malformed file is
    /// an error naming the file, the line and the problem; nothing of it applies.
    public static func parse(_ text: String, file: String, replica: Int, replicas: Int) throws(ControlFileError) -> ReplicaControl {
        guard text.utf8.count <= bytesMax else { throw ControlFileError(file: file, line: 0, problem: "longer than \(bytesMax) bytes") }
        var found: Set<Int>?
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let number = index + 1
            guard line.hasPrefix("blocked:") else {
                throw ControlFileError(file: file, line: number, problem: "expected \"blocked:\" and peer ids, got \"\(line.prefix(40))\"")
            }
            guard found == nil else { throw ControlFileError(file: file, line: number, problem: "a second \"blocked:\" line") }
            var peers = Set<Int>()
            for word in line.dropFirst("blocked:".count).split(separator: " ", omittingEmptySubsequences: true) {
                guard let peer = Int(word), (0..<replicas).contains(peer), peer != replica else {
                    throw ControlFileError(file: file, line: number,
                                           problem: "\"\(word.prefix(20))\" is not a peer of replica \(replica) (ids 0 to \(replicas - 1), not its own)")
                }
                peers.insert(peer)
            }
            found = peers
        }
        guard let found else { throw ControlFileError(file: file, line: 0, problem: "no \"blocked:\" line") }
        return ReplicaControl(blockedPeers: found)
    }

    /// Reads and parses the file; a file that is not there means nothing is blocked.
    public static func read(path: String, replica: Int, replicas: Int) throws(ControlFileError) -> ReplicaControl {
        guard FileManager.default.fileExists(atPath: path) else { return ReplicaControl() }
        guard let handle = FileHandle(forReadingAtPath: path) else { throw ControlFileError(file: path, line: 0, problem: "cannot be opened") }
        defer { try? handle.close() }
        // One byte past the limit is enough to tell that it is too long.
        let data: Data
        do {
            data = try handle.read(upToCount: bytesMax + 1) ?? Data()
        } catch {
            throw ControlFileError(file: path, line: 0, problem: "cannot be read: \(error)")
        }
        guard data.count <= bytesMax else { throw ControlFileError(file: path, line: 0, problem: "longer than \(bytesMax) bytes") }
        guard let text = String(data: data, encoding: .utf8) else { throw ControlFileError(file: path, line: 0, problem: "not UTF-8 text") }
        return try parse(text, file: path, replica: replica, replicas: replicas)
    }

    /// Writes the file whole (a temporary file renamed over it).
    public func write(path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
    }
}

/// A control file the replica ignores, and why.
public struct ControlFileError: Error, Hashable, CustomStringConvertible {
    public let file: String
    /// 1-based; 0 for the file as a whole.
    public let line: Int
    public let problem: String

    public var description: String { line > 0 ? "\(file):\(line): \(problem)" : "\(file): \(problem)" }
}
