import CLinux
import Foundation
import Glibc
import Synchronization
public import ThawSandboxCore

/// A child process the host waits for without holding a thread of Swift's concurrency pool.
public final class ChildProcess: Sendable {
    public let pid: Int32
    private let reaped = Mutex<Bool>(false)

    /// Starts `executable` (see `Spawn.start`).
    public init(executable: String, arguments: [String], environment: [String], descriptors: [Int32: Int32]) throws {
        pid = try Spawn.start(executable, arguments: arguments, environment: environment, descriptors: descriptors)
    }

    private init(pid: Int32) { self.pid = pid }

    /// Starts `executable` with `madvise(MADV_HUGEPAGE)` refused in it (see
    /// `thaw_refuse_huge_page_advice` in CLinux): from a thread of its own that takes the
    /// seccomp filter, starts the child, which inherits it, and ends. The rest of this process
    /// keeps its own madvise.
    ///
    /// - Throws: `SandboxError(.setupFailed)` when the filter cannot be installed; `Spawn.start`'s errors.
    public static func refusingHugePageAdvice(executable: String, arguments: [String], environment: [String],
                                              descriptors: [Int32: Int32]) async throws -> ChildProcess {
        let started = await OwnThread.run { () -> Result<Int32, any Error> in
            guard thaw_refuse_huge_page_advice() == 0 else {
                return .failure(SandboxError(.setupFailed, "cannot refuse huge-page advice to \(executable) (seccomp): \(String(cString: strerror(errno)))"))
            }
            return Result { try Spawn.start(executable, arguments: arguments, environment: environment, descriptors: descriptors) }
        }
        return ChildProcess(pid: try started.get())
    }

    /// Sends `signal` unless the process has been reaped (its pid may be reused by then).
    public func signal(_ signal: Int32) {
        reaped.withLock { done in
            if !done { _ = kill(pid, signal) }
        }
    }

    /// Whether `wait` has reaped the process.
    public var hasEnded: Bool { reaped.withLock { $0 } }

    /// Waits for the end and reaps the process.
    public func wait() async -> Termination {
        let termination = await OwnThread.run { [pid] in Spawn.wait(pid) }
        reaped.withLock { $0 = true }
        return termination
    }
}

/// Runs blocking work (waiting for a process, reading a pipe) on a thread of its own, so it
/// never occupies one of the few threads Swift's cooperative pool has.
enum OwnThread {
    static func run<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            Thread { continuation.resume(returning: body()) }.start()
        }
    }
}

/// A pipe whose two ends close on exec, so a child gets only the end it is given explicitly.
struct PipeEnds {
    let read: Int32
    let write: Int32

    init() throws {
        var ends: [Int32] = [0, 0]
        // pipe2 is not visible to Swift without _GNU_SOURCE; the flag is set right after.
        guard pipe(&ends) == 0 else {
            throw SandboxError(.setupFailed, "cannot create a pipe: \(String(cString: strerror(errno)))")
        }
        for end in ends { _ = fcntl(end, F_SETFD, FD_CLOEXEC) }
        read = ends[0]
        write = ends[1]
    }

    func closeBoth() {
        close(read)
        close(write)
    }

    /// Reads until end of file, keeping at most `limit` bytes; `overflow` is called once when
    /// more arrive. Returns what was kept and whether there was more.
    static func drain(_ descriptor: Int32, limit: Int, overflow: @escaping @Sendable () -> Void = {},
                      chunk: (@Sendable ([UInt8]) -> Void)? = nil) async -> (bytes: [UInt8], truncated: Bool) {
        await OwnThread.run {
            var kept: [UInt8] = []
            var truncated = false
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let count = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                chunk?(Array(buffer[0..<count]))
                let room = limit - kept.count
                if count > room {
                    kept += buffer[0..<max(room, 0)]
                    if !truncated { overflow() }
                    truncated = true
                } else {
                    kept += buffer[0..<count]
                }
            }
            close(descriptor)
            return (kept, truncated)
        }
    }

    /// Writes all of `bytes` and closes; a reader that went away (EPIPE) ends it early.
    static func feed(_ descriptor: Int32, _ bytes: [UInt8]) async {
        await OwnThread.run {
            var offset = 0
            while offset < bytes.count {
                let count = bytes[offset...].withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) }
                if count < 0 && errno == EINTR { continue }
                if count <= 0 { break }
                offset += count
            }
            close(descriptor)
        }
    }
}
