import CJemalloc

/// Facts about this build, for `csmr version` and for the `run.yaml` of every run.
enum BuildInfo {
    static let packageVersion = "0.1.0"

    static var swiftVersion: String {
        #if compiler(>=6.4)
        return "6.4 or later"
        #elseif compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #elseif compiler(>=6.1)
        return "6.1"
        #else
        return "6.0"
        #endif
    }

    /// The allocator as jemalloc itself reports it, or nil when jemalloc does not answer (then the
    /// process runs on the system allocator and its numbers are not comparable).
    static var jemallocVersion: String? {
        var version: UnsafePointer<CChar>?
        var length = MemoryLayout<UnsafePointer<CChar>?>.size
        guard mallctl("version", &version, &length, nil, 0) == 0, let version else { return nil }
        return String(cString: version)
    }

    /// Bytes jemalloc has handed out to the application right now.
    static var jemallocAllocatedBytes: Int? {
        // Statistics are cached per epoch; advancing it refreshes them.
        var epochNew: UInt64 = 1
        var epochOld: UInt64 = 0
        var epochLength = MemoryLayout<UInt64>.size
        guard mallctl("epoch", &epochOld, &epochLength, &epochNew, epochLength) == 0 else { return nil }
        var allocated = 0
        var length = MemoryLayout<Int>.size
        guard mallctl("stats.allocated", &allocated, &length, nil, 0) == 0 else { return nil }
        return allocated
    }

    static var allocatorDescription: String {
        guard let version = jemallocVersion else { return "system malloc (jemalloc not active)" }
        return "jemalloc \(version)"
    }
}
