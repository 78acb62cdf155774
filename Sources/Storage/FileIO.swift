#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Thin wrappers over the POSIX calls storage needs, each turning a failure into a
// `StorageError.io` that names the file. Kept separate so the formats stay pure.

enum FileIO {
    static func fail(_ path: String, _ operation: String) -> StorageError {
        .io(file: path, operation: operation, errno: errno)
    }

    static func openFile(_ path: String, flags: Int32, mode: mode_t = 0o644) throws(StorageError) -> Int32 {
        while true {
            let fd = open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            if errno != EINTR { throw fail(path, "open") }
        }
    }

    /// Writes all of `bytes` at `offset`, retrying short writes and interruptions.
    static func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int, path: String) throws(StorageError) {
        var done = 0
        while done < bytes.count {
            let written = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if written < 0 {
                if errno == EINTR { continue }
                throw fail(path, "pwrite")
            }
            done += written
        }
    }

    static func pwriteAll(_ fd: Int32, _ bytes: [UInt8], at offset: Int, path: String) throws(StorageError) {
        guard !bytes.isEmpty else { return }
        var failure: StorageError?
        bytes.withUnsafeBytes { buffer in
            do throws(StorageError) { try pwriteAll(fd, buffer, at: offset, path: path) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// The whole file.
    static func readAll(_ path: String) throws(StorageError) -> [UInt8] {
        let fd = try openFile(path, flags: O_RDONLY)
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw fail(path, "fstat") }
        let size = Int(info.st_size)
        var bytes = [UInt8](repeating: 0, count: size)
        var done = 0
        var failed = false
        bytes.withUnsafeMutableBytes { buffer in
            while done < size {
                let count = pread(fd, buffer.baseAddress! + done, size - done, off_t(done))
                if count < 0 {
                    if errno == EINTR { continue }
                    failed = true
                    return
                }
                if count == 0 { break }
                done += count
            }
        }
        if failed { throw fail(path, "pread") }
        // The file shrank while we read it: return what is there.
        if done < size { bytes.removeLast(size - done) }
        return bytes
    }

    static func syncData(_ fd: Int32, path: String) throws(StorageError) {
        #if canImport(Glibc)
        guard fdatasync(fd) == 0 else { throw fail(path, "fdatasync") }
        #else
        guard fcntl(fd, F_FULLFSYNC) == 0 else { throw fail(path, "fsync") }
        #endif
    }

    static func syncFile(_ fd: Int32, path: String) throws(StorageError) {
        guard fsync(fd) == 0 else { throw fail(path, "fsync") }
    }

    /// Makes a file's creation, rename or removal in `directory` durable.
    static func fsyncDirectory(_ directory: String) throws(StorageError) {
        let fd = try openFile(directory, flags: O_RDONLY | O_DIRECTORY)
        defer { close(fd) }
        try syncFile(fd, path: directory)
    }

    /// Reserves `bytes` for the file so appends do not allocate blocks (and the unwritten part
    /// reads as zeros). A file system without support is not an error: appends then extend it.
    static func preallocate(_ fd: Int32, bytes: Int, path: String) throws(StorageError) {
        #if canImport(Glibc)
        let result = posix_fallocate(fd, 0, off_t(bytes))
        guard result == 0 || result == EOPNOTSUPP || result == EINVAL else {
            throw .io(file: path, operation: "posix_fallocate", errno: result)
        }
        #endif
    }

    static func closeFile(_ fd: Int32) {
        _ = close(fd)
    }

    static func truncate(_ fd: Int32, bytes: Int, path: String) throws(StorageError) {
        guard ftruncate(fd, off_t(bytes)) == 0 else { throw fail(path, "ftruncate") }
    }

    static func renameFile(_ from: String, _ to: String) throws(StorageError) {
        guard rename(from, to) == 0 else { throw fail(to, "rename from \(from)") }
    }

    static func removeFile(_ path: String) throws(StorageError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw fail(path, "unlink") }
    }

    /// Creates `directory` (one level) unless it exists.
    /// Creates `directory` and any missing parents.
    static func makeDirectory(_ directory: String) throws(StorageError) {
        if let slash = directory.lastIndex(of: "/"), slash > directory.startIndex {
            let parent = String(directory[..<slash])
            if access(parent, F_OK) != 0 { try makeDirectory(parent) }
        }
        guard mkdir(directory, 0o755) == 0 || errno == EEXIST else { throw fail(directory, "mkdir") }
    }

    /// The names in `directory`, without "." and "..".
    static func list(_ directory: String) throws(StorageError) -> [String] {
        guard let handle = opendir(directory) else { throw fail(directory, "opendir") }
        defer { closedir(handle) }
        var names: [String] = []
        while let entry = readdir(handle) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != ".", name != ".." { names.append(name) }
        }
        return names
    }

    static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : directory + "/" + name
    }

    /// Monotonic nanoseconds, for sync latency only.
    static func monotonicNanoseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }
}
