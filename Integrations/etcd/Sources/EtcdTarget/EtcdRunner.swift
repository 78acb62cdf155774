import Dispatch
import Foundation
import Harness
import Workload

/// Runs a `target: etcd` workload: starts a local cluster (or takes the endpoints the workload
/// names), waits until every channel is served, and drives it with the harness's load generator.
public enum EtcdRunner {
    /// - Parameter folder: where a local cluster keeps its data directories and logs.
    public static func run(_ spec: WorkloadSpec, folder: URL, recordHistory: Bool = false,
                           progress: (@Sendable (String) -> Void)? = nil) throws -> RunOutcome {
        guard spec.target == .etcd else {
            throw SpecErrors(errors: [SpecError(file: spec.file, line: 0, column: 0, field: "target", problem: "csmr-etcd runs target: etcd only")])
        }
        var cluster: LocalEtcdCluster?
        if spec.etcd.endpoints.isEmpty {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            cluster = try LocalEtcdCluster(members: spec.group.replicas, binary: spec.etcd.binary, folder: folder)
        }
        let stopOnSignal = cluster.map(SignalStop.init)
        defer {
            cluster?.stop()
            stopOnSignal?.cancel()
        }
        try cluster?.start()
        let endpoints = cluster?.clientEndpoints ?? spec.etcd.endpoints
        let channelCount = (spec.clients.count + spec.etcd.clientsPerConnection - 1) / spec.etcd.clientsPerConnection
        progress?("etcd: \(cluster == nil ? "endpoints" : "local cluster of \(endpoints.count) member(s)") \(endpoints.joined(separator: ", ")); \(channelCount) gRPC connection(s) for \(spec.clients.count) client(s)")
        var made: EtcdTarget?
        defer { made?.close() }
        return try WorkloadRunner.runExternal(spec, recordHistory: recordHistory, progress: progress) { onReply, onEvent, loop in
            let target = try EtcdTarget(endpoints: endpoints, channelCount: channelCount, loop: loop, onReply: onReply, onEvent: onEvent)
            made = target
            do {
                try blocking { try await target.waitUntilServing(seconds: 30) }
            } catch {
                let exited = cluster?.exited() ?? []
                throw exited.isEmpty ? error : EtcdError.memberExited(exited.joined(separator: "; "))
            }
            return target
        }
    }

    /// Sweeps `spec` as `csmr sweep` does: each step a run of its own (a fresh local cluster, or
    /// the named endpoints), its time series in `folder/step-N/timeseries.csv`, the analysis and
    /// the knee `SweepRunner`'s.
    public static func sweep(_ spec: WorkloadSpec, sweep: SweepSpec, folder: URL,
                             progress: (@Sendable (String) -> Void)? = nil) throws -> SweepRunner.Outcome {
        try SweepRunner.run(spec, sweep: sweep, folder: folder, progress: progress) { step, stepFolder in
            try run(step, folder: stepFolder, progress: progress)
        }
    }

    /// Runs `body` on the concurrency pool and waits for it on this (non-pool) thread.
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
        let result = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        Task {
            do { result.value = .success(try await body()) } catch { result.value = .failure(error) }
            done.signal()
        }
        done.wait()
        return try result.value!.get()
    }

    private final class ResultBox<T>: @unchecked Sendable {
        // Written once by the task before the semaphore is signalled, read after the wait.
        var value: Result<T, any Error>?
    }
}

/// Stops a local cluster's members when this process is told to stop (SIGINT, SIGTERM), so
/// no etcd outlives an interrupted run; then exits with the conventional status.
final class SignalStop: @unchecked Sendable {
    private let sources: [DispatchSourceSignal]

    init(_ cluster: LocalEtcdCluster) {
        sources = [SIGINT, SIGTERM].map { number in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                cluster.stop()
                exit(128 + number)
            }
            source.resume()
            return source
        }
    }

    func cancel() {
        for source in sources { source.cancel() }
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
    }
}
