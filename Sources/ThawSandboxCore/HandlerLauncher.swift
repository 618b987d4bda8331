import Glibc

/// The last steps of every sandbox, in the process sandbox's init and in the microVM's guest
/// init alike: find the handler's program, become the image's user, start the handler, and
/// reap every process until the handler ends.
public enum HandlerLauncher {
    /// What to run, already resolved against the image (see `FunctionSpec` on the host).
    public struct Launch: Sendable, Equatable {
        public var arguments: [String]
        public var environment: [String]
        public var workingDirectory: String
        public var user: String

        public init(arguments: [String], environment: [String], workingDirectory: String, user: String) {
            self.arguments = arguments
            self.environment = environment
            self.workingDirectory = workingDirectory
            self.user = user
        }

        /// The value of `name` in the environment (the last entry wins), if set.
        public func environmentValue(_ name: String) -> String? {
            environment.last(where: { $0.hasPrefix(name + "=") }).map { String($0.dropFirst(name.count + 1)) }
        }
    }

    /// The PATH a handler gets when the image sets none (the one container runtimes use).
    public static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

    /// A handler ready to start, again and again: its program found, its environment complete,
    /// the user it runs as resolved.
    public struct Prepared: Sendable {
        public var program: String
        public var arguments: [String]
        public var environment: [String]
        public var identity: UserDatabase.Identity

        /// Starts one handler process with `descriptors` (child → parent). This process must
        /// already be the handler's user (see `prepare(_:dropPrivileges:)`).
        ///
        /// - Returns: the handler's pid.
        public func spawn(descriptors: [Int32: Int32] = [:]) throws -> Int32 {
            do {
                return try Spawn.start(program, arguments: arguments, environment: environment, descriptors: descriptors)
            } catch let error as SandboxError {
                throw SandboxError(.handlerNotFound, "the handler \(program) cannot be started: \(error.message)")
            }
        }
    }

    /// Runs in the image's root (after chroot): resolves the user from the image's
    /// `/etc/passwd` and `/etc/group`, enters the working directory, finds the program and,
    /// when `dropPrivileges`, becomes the user for good.
    ///
    /// - Throws: `SandboxError` — `.invalidFunction` for an unknown user, `.handlerNotFound` for
    ///   a missing program, `.setupFailed` for the rest.
    public static func prepare(_ launch: Launch, dropPrivileges: Bool) throws -> Prepared {
        let users = UserDatabase(passwd: SystemCalls.readFile("/etc/passwd") ?? "",
                                 group: SystemCalls.readFile("/etc/group") ?? "")
        let identity = try users.resolve(launch.user)
        try SystemCalls.makeDirectories(launch.workingDirectory)
        _ = chown(launch.workingDirectory, identity.uid, identity.gid)
        guard chdir(launch.workingDirectory) == 0 else {
            throw SandboxError(.setupFailed, "cannot enter the working directory \(launch.workingDirectory): \(SystemCalls.errorText())")
        }
        var environment = launch.environment
        if launch.environmentValue("HOME") == nil { environment.append("HOME=" + identity.home) }
        if launch.environmentValue("HOSTNAME") == nil {
            var name = [CChar](repeating: 0, count: 256)
            gethostname(&name, name.count)
            environment.append("HOSTNAME=" + String(cString: name))
        }
        let program = try locate(launch.arguments[0], path: launch.environmentValue("PATH") ?? defaultPath)
        if dropPrivileges {
            let groups = identity.supplementaryGroups.map { gid_t($0) }
            guard setgroups(groups.count, groups) == 0, setgid(identity.gid) == 0, setuid(identity.uid) == 0 else {
                throw SandboxError(.setupFailed, "cannot become user \(identity.uid):\(identity.gid): \(SystemCalls.errorText())")
            }
        }
        return Prepared(program: program, arguments: launch.arguments, environment: environment, identity: identity)
    }

    /// `prepare`, then starts the handler once with `descriptors` (child → parent; empty
    /// inherits 0–2).
    ///
    /// - Returns: the handler's pid.
    /// - Throws: as `prepare`.
    /// - Parameter keepPrivileges: drop to the user in the child only, so this process stays
    ///   root (the microVM's init must still write its answer and power off; the process
    ///   sandbox's init preloads the image by inode). That needs `fork` rather than
    ///   `posix_spawn`; the child makes only async-signal-safe calls, so this process may have
    ///   other threads.
    public static func start(_ launch: Launch, descriptors: [Int32: Int32] = [:], keepPrivileges: Bool = false) throws -> Int32 {
        let prepared = try prepare(launch, dropPrivileges: !keepPrivileges)
        if keepPrivileges {
            let groups = prepared.identity.supplementaryGroups.map { gid_t($0) }
            return try forkAndExec(prepared.program, prepared.arguments, prepared.environment, descriptors: descriptors,
                                   groups: groups, identity: prepared.identity)
        }
        return try prepared.spawn(descriptors: descriptors)
    }

    /// fork, then in the child: descriptors, user, exec. Everything the child needs is
    /// prepared before the fork (the descriptor pairs sorted, the strings copied); the child
    /// only makes system calls, as a child of a process with other threads may.
    static func forkAndExec(_ program: String, _ arguments: [String], _ environment: [String], descriptors: [Int32: Int32],
                            groups: [gid_t], identity: UserDatabase.Identity) throws -> Int32 {
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        // A pipe that closes on exec: the child reports an errno through it if exec fails.
        var status: [Int32] = [0, 0]
        guard pipe(&status) == 0 else { throw SandboxError(.setupFailed, "cannot create a pipe: \(SystemCalls.errorText())") }
        _ = fcntl(status[1], F_SETFD, FD_CLOEXEC)
        let pairs = descriptors.sorted(by: { $0.key < $1.key }).map { (child: $0.key, parent: $0.value) }
        var noSignals = sigset_t()
        sigemptyset(&noSignals)
        let pid = fork()
        if pid == 0 {
            close(status[0])
            // As posix_spawn gives the handler on the other path: no signal blocked, every
            // signal's default action.
            sigprocmask(SIG_SETMASK, &noSignals, nil)
            for signal in 1..<Int32(65) { _ = Glibc.signal(signal, SIG_DFL) }
            for pair in pairs { dup2(pair.parent, pair.child) }
            var code: Int32 = 0
            if setgroups(groups.count, groups) != 0 || setgid(identity.gid) != 0 || setuid(identity.uid) != 0 {
                code = errno
            } else {
                execve(program, argv, envp)
                code = errno
            }
            var failure = code
            _ = write(status[1], &failure, 4)
            _exit(127)
        }
        close(status[1])
        defer { close(status[0]) }
        guard pid > 0 else { throw SandboxError(.setupFailed, "cannot fork: \(SystemCalls.errorText())") }
        var failure: Int32 = 0
        if read(status[0], &failure, 4) == 4 {
            _ = Spawn.wait(pid)
            throw SandboxError(failure == ENOENT || failure == EACCES || failure == ENOEXEC ? .handlerNotFound : .setupFailed,
                               "the handler \(program) cannot be started as \(identity.uid):\(identity.gid): \(SystemCalls.errorText(failure))")
        }
        return pid
    }

    /// Reaps every child (as PID 1 this process inherits every orphan) until `handler` ends.
    public static func reap(until handler: Int32) -> Termination {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, 0)
            if pid < 0 {
                if errno == EINTR { continue }
                return .exited(125)
            }
            if pid == handler { return Termination(waitStatus: status) }
        }
    }

    /// The program `name` names: a path as it is, otherwise the first executable of that name
    /// in `path`'s directories, as a shell's lookup finds it.
    public static func locate(_ name: String, path: String) throws -> String {
        if name.contains("/") {
            guard access(name, X_OK) == 0 else {
                throw SandboxError(.handlerNotFound, "the handler \(name) is not an executable file in the image: \(SystemCalls.errorText())")
            }
            return name
        }
        for directory in path.split(separator: ":") where !directory.isEmpty {
            let candidate = directory + "/" + name
            var info = stat()
            if stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 {
                return candidate
            }
        }
        throw SandboxError(.handlerNotFound, "the handler \(name) is not in the image's PATH (\(path))")
    }
}
