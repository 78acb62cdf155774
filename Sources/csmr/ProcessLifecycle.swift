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

    /// Blocks until SIGTERM or SIGINT. `onReport` runs on SIGUSR1 when given. Signals arrive on a
    /// queue of their own; the caller's event loops keep working.
    static func waitForTermination(label: String, onReport: (@Sendable () -> Void)? = nil) {
        var numbers = [SIGTERM, SIGINT]
        if onReport != nil { numbers.append(SIGUSR1) }
        for number in numbers { signal(number, SIG_IGN) }
        let queue = DispatchQueue(label: label)
        let done = DispatchSemaphore(value: 0)
        let sources = numbers.map { number in
            let source = DispatchSource.makeSignalSource(signal: number, queue: queue)
            source.setEventHandler { if number == SIGUSR1 { onReport?() } else { done.signal() } }
            source.resume()
            return source
        }
        done.wait()
        for source in sources { source.cancel() }
    }
}
