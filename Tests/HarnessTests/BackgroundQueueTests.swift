import Foundation
import Harness
import NIOConcurrencyHelpers
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite struct BackgroundQueueTests {
    /// Work runs one closure at a time, in the order it was handed in, on a thread whose
    /// scheduling priority is the lowest (nice 19 on Linux), so checkpoint encoding only takes
    /// CPU a replica's event loop leaves idle.
    @Test func runsWorkInOrderAtTheLowestPriority() {
        let queue = BackgroundQueue(name: "test-background")
        let seen = NIOLockedValueBox<[Int]>([])
        let niceness = NIOLockedValueBox<Int32?>(nil)
        let done = DispatchSemaphore(value: 0)
        for index in 0..<200 {
            queue.async {
                seen.withLockedValue { $0.append(index) }
                #if os(Linux)
                if index == 0 { niceness.withLockedValue { $0 = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0) } }
                #endif
                if index == 199 { done.signal() }
            }
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        #expect(seen.withLockedValue { $0 } == Array(0..<200))
        #if os(Linux)
        // PRIO_PROCESS with 0 reads the calling thread's own niceness on Linux.
        #expect(niceness.withLockedValue { $0 } == 19)
        #endif
    }
}
