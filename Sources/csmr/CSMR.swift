import ArgumentParser

@main
struct CSMR: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "csmr",
        abstract: "Composed, parallel state machine replication: run, compare and check replicated services.",
        version: BuildInfo.packageVersion,
        subcommands: [Run.self, Compare.self, Sweep.self, Sim.self, Check.self, Replica.self, Proxy.self, ExecutorBench.self, Demo.self, Version.self]
    )
}
