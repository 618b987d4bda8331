import Glibc

/// How a process ended.
public enum Termination: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signalled(Int32)

    /// Decodes a `waitpid` status (WIFEXITED, WEXITSTATUS and WTERMSIG are macros Swift does
    /// not import).
    public init(waitStatus status: Int32) {
        self = status & 0x7f == 0 ? .exited((status >> 8) & 0xff) : .signalled(status & 0x7f)
    }

    /// As a shell reports it: the exit status, or 128 plus the signal.
    public var shellStatus: Int32 {
        switch self {
        case .exited(let code): code
        case .signalled(let signal): 128 + signal
        }
    }

    public var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signalled(let signal): "was killed by signal \(signal)\(signal == SIGKILL ? " (SIGKILL)" : "")"
        }
    }
}

/// `posix_spawn` with chosen descriptors, an empty signal mask and default signal dispositions
/// (a parent that blocks or ignores SIGTERM, as service runners do, would otherwise hand that
/// to the child).
///
/// Hand-written: Foundation's `Process` cannot pass descriptors beyond 0–2, and the microVM's
/// guest init has no Foundation at all.
public enum Spawn {
    /// Starts `executable` (a path) with `arguments` (argv[0] included) and `environment`;
    /// `descriptors` maps a child descriptor number to the parent's descriptor it copies.
    ///
    /// - Returns: the child's pid.
    /// - Throws: `SandboxError(.handlerNotFound)` when the file does not exist, `.setupFailed` otherwise.
    public static func start(_ executable: String, arguments: [String], environment: [String],
                             descriptors: [Int32: Int32] = [:]) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Each descriptor goes first to a number above every one involved, then to its place:
        // copied straight, a parent's descriptor that is also another's target (a pipe end that
        // happens to be 3 while 3 is assigned first) would be overwritten before it is copied.
        let mapping = descriptors.sorted(by: { $0.key < $1.key })
        let above = (mapping.flatMap { [$0.key, $0.value] }.max() ?? 2) + 1
        for (offset, (_, parent)) in mapping.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, parent, above + Int32(offset))
        }
        for (offset, (child, _)) in mapping.enumerated() {
            posix_spawn_file_actions_adddup2(&actions, above + Int32(offset), child)
            posix_spawn_file_actions_addclose(&actions, above + Int32(offset))
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
        return child
    }

    /// Blocks until `pid` ends and reaps it.
    public static func wait(_ pid: Int32) -> Termination {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return Termination(waitStatus: status)
    }
}
