// Lives here, beside DurabilityMode, so workload and cluster files can name a scheduler without
// depending on the executor.

/// How a replica executes decided commands.
public enum SchedulerKind: String, CaseIterable, Hashable, Sendable {
    /// One thread, in slot order: the reference.
    case sequential
    /// Class-based early scheduling: each conflict class is mapped to one worker when commands
    /// are delivered; a command spanning classes on several workers makes them meet at a barrier,
    /// where the last to arrive executes it.
    case early
    /// Late scheduling on a dependency graph: a command waits for the earlier pending commands it
    /// conflicts with; any idle worker takes any command that is free.
    case graph
}
