/// How durable an acknowledged record is.
public enum DurabilityMode: String, Sendable, CaseIterable {
    /// Nothing is written; the caller keeps acceptor state in memory (`MemoryStorage`).
    case none
    /// Records are handed to the OS with write(2) and never synced: they survive a process
    /// crash, not a machine crash. Durable as soon as written.
    case write
    /// Records are durable once fdatasync returns (group commit).
    case fsync
}
