import Foundation
import Glibc
import Synchronization

/// A process started with `posix_spawn`, with chosen descriptors, an empty signal mask and
/// default signal dispositions (a parent that blocks or ignores SIGTERM, as service runners
/// do, would otherwise hand that to the child).
///
/// Hand-written: Foundation's `Process` cannot pass descriptors beyond 0–2, which the sandbox
/// uses for its report pipe.
public final class ChildProcess: Sendable {
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signalled(Int32)

        public var description: String {
            switch self {
            case .exited(let code): "exited with status \(code)"
            case .signalled(let signal): "was killed by signal \(signal)\(signal == SIGKILL ? " (SIGKILL)" : "")"
            }
        }
    }

    public let pid: Int32
    private let reaped = Mutex<Bool>(false)

    /// Starts `executable` with `arguments` (argv[0] is the executable), `environment`, and
    /// `descriptors` mapping a child descriptor number to the parent's descriptor it is a copy of.
    public init(executable: String, arguments: [String], environment: [String], descriptors: [Int32: Int32]) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (child, parent) in descriptors.sorted(by: { $0.key < $1.key }) {
            posix_spawn_file_actions_adddup2(&actions, parent, child)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var child: pid_t = 0
        let status = posix_spawn(&child, executable, &actions, &attributes, argv, envp)
        guard status == 0 else {
            throw SandboxError(status == ENOENT ? .handlerNotFound : .setupFailed,
                               "cannot start \(executable): \(String(cString: strerror(status)))")
        }
        pid = child
    }

    public func signal(_ signal: Int32) {
        reaped.withLock { done in
            if !done { _ = kill(pid, signal) }
        }
    }

    /// Blocks until the process ends and reaps it. Call from a thread of its own.
    public func waitBlocking() -> Termination {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        reaped.withLock { $0 = true }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, which Swift does not import as functions.
        if status & 0x7f == 0 { return .exited((status >> 8) & 0xff) }
        return .signalled(status & 0x7f)
    }

    /// Waits for the end without holding a thread of Swift's concurrency pool.
    public func wait() async -> Termination {
        await OwnThread.run { self.waitBlocking() }
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
