public import Foundation

/// A long-running helper process (a test server) started with `posix_spawn`.
///
/// Foundation's `Process` hands the test runner's signal mask to the child, and the runner
/// blocks SIGTERM on its threads, so a server started that way ignores `terminate()`. This
/// spawns with an empty mask and default dispositions, then stops with SIGTERM, falling back
/// to SIGKILL, and reaps the child itself.
public final class BackgroundProcess: @unchecked Sendable {
    public let pid: pid_t
    private let lock = NSLock()
    private var exited = false
    private var status: Int32 = 0

    /// Starts `tool` (found on PATH) with `arguments`; its output goes to `logPath` or nowhere.
    public init(_ tool: String, _ arguments: [String], logPath: String = "/dev/null") throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([tool] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let status = posix_spawnp(&child, tool, &actions, &attributes, argv, environ)
        guard status == 0 else {
            throw TestSupport.CommandFailed(description: "cannot start \(tool): \(String(cString: strerror(status)))")
        }
        pid = child
    }

    deinit { stop() }

    /// Stops the process with SIGSTOP and returns once every one of its threads is stopped:
    /// `kill` returns before the signal is delivered, and a thread busy on the other core can
    /// still answer a request meanwhile.
    public func suspend() {
        kill(pid, SIGSTOP)
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
            let stopped = tasks.allSatisfy { task in
                guard let stat = try? String(contentsOfFile: "/proc/\(pid)/task/\(task)/stat", encoding: .utf8),
                      let close = stat.lastIndex(of: ")") else { return false }
                // The state follows the command name's closing parenthesis: T when stopped.
                return stat[stat.index(close, offsetBy: 2)] == "T"
            }
            if !tasks.isEmpty && stopped { return }
            usleep(1000)
        }
    }

    /// Resumes a process stopped by `suspend`.
    public func resume() { kill(pid, SIGCONT) }

    /// Stops the process (SIGTERM, then SIGKILL after `grace` seconds) and reaps it.
    ///
    /// - Returns: its exit code when it exited by itself; nil when a signal ended it (the
    ///   SIGTERM left unhandled, or the SIGKILL), or when it was stopped before.
    @discardableResult
    public func stop(grace: TimeInterval = 5) -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        guard !exited else { return nil }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(grace)
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                break
            }
            usleep(20_000)
        }
        exited = true
        // Linux wait status: low 7 bits are the terminating signal, 0 for a normal exit.
        return status & 0x7f == 0 ? (status >> 8) & 0xff : nil
    }

    /// Whether the process is still running (it has not exited, or has not been reaped).
    public var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        guard !exited else { return false }
        if waitpid(pid, &status, WNOHANG) == pid {
            exited = true
            return false
        }
        return true
    }
}
