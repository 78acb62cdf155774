import ArgumentParser
import CProcessShims
import Dispatch
import Foundation

/// What `csmr replica` and `csmr proxy` share as long-running processes: dying with the harness
/// that started them, and waiting for SIGTERM or SIGINT while their event loops work.
enum ProcessLifecycle {
    /// With `exitWithParent`, the kernel kills this process when the thread that started it
    /// exits (Linux's parent-death signal is per thread); a parent already gone ends it now.
    static func bindToParent(_ exitWithParent: Bool) throws {
        guard exitWithParent else { return }
        _ = csmr_exit_with_parent()
        if getppid() == 1 { throw ExitCode(1) }
    }

    /// Ignores SIGUSR1 and SIGUSR2 until `watchSignals` handles them. Call it first: their
    /// default action ends the process.
    static func holdReportSignals() {
        signal(SIGUSR1, SIG_IGN)
        signal(SIGUSR2, SIG_IGN)
    }

    /// Blocks until SIGTERM or SIGINT. `onReport` runs on SIGUSR1 when given. Signals arrive on a
    /// queue of their own; the caller's event loops keep working.
    static func waitForTermination(label: String, onReport: (@Sendable () -> Void)? = nil) {
        watchSignals(label: label, onReport: onReport).waitForTermination()
    }

    /// Starts handling SIGTERM and SIGINT, and SIGUSR1 (`onReport`) and SIGUSR2 (`onControl`)
    /// when given. With `onControl`, it returns only once a SIGUSR2 it sends itself has been
    /// handled (at most 5 s): libdispatch registers a signal source asynchronously, and a control
    /// signal sent in between would be lost. Call it before announcing readiness.
    static func watchSignals(label: String, onReport: (@Sendable () -> Void)? = nil, onControl: (@Sendable () -> Void)? = nil) -> SignalWatch {
        var numbers = [SIGTERM, SIGINT]
        if onReport != nil { numbers.append(SIGUSR1) }
        if onControl != nil { numbers.append(SIGUSR2) }
        for number in numbers { signal(number, SIG_IGN) }
        let queue = DispatchQueue(label: label)
        let done = DispatchSemaphore(value: 0)
        let controlHandled = DispatchSemaphore(value: 0)
        let sources = numbers.map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler {
                switch number {
                case SIGUSR1: onReport?()
                case SIGUSR2:
                    onControl?()
                    controlHandled.signal()
                default: done.signal()
                }
            }
            source.resume()
            return source
        }
        if onControl != nil {
            let deadline = DispatchTime.now() + .seconds(5)
            // Bounded: resent every 10 ms until the handler has run once.
            while DispatchTime.now() < deadline {
                kill(getpid(), SIGUSR2)
                if controlHandled.wait(timeout: .now() + .milliseconds(10)) == .success { break }
            }
        }
        return SignalWatch(done: done, sources: sources)
    }
}

/// The signal handling `ProcessLifecycle.watchSignals` set up.
struct SignalWatch {
    let done: DispatchSemaphore
    let sources: [any DispatchSourceSignal]

    /// Blocks until SIGTERM or SIGINT.
    func waitForTermination() {
        done.wait()
        for source in sources { source.cancel() }
    }
}
