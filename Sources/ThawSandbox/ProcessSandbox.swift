public import ThawSandboxCore
import Foundation
import Glibc
import Synchronization

/// Runs a function's handler in a process sandbox: new mount, PID, UTS, IPC and network
/// namespaces (made by util-linux `unshare`), with the image's FUSE file loop-mounted read-only
/// as ext4 under a tmpfs overlay, chrooted (see `SandboxInit`, which runs inside).
///
/// The event goes to the handler's standard input; its standard output is the response and
/// its standard error the function's log. The whole sandbox is killed on timeout, on a response
/// over the limit, and on cancellation; since every mount lives in the sandbox's own namespace
/// and the loop device autoclears, its death removes them, and `run` waits until the loop device
/// is gone before it returns.
public struct ProcessSandbox: Sendable {
    public struct Options: Sendable {
        /// The command that runs `SandboxInit` inside the namespaces, followed by the sandbox's
        /// work directory: `thaw sandbox-init`, which reads the plan as JSON from descriptor
        /// `SandboxPlan.descriptor`.
        public var initCommand: [String]
        public var tmpSize = 64 << 20
        public var network = SandboxPlan.Network.none
        /// The loop device's read-ahead in KiB; nil keeps the kernel's default (128).
        public var deviceReadAheadKiB: Int? = 16
        public var timeout: Duration = .seconds(30)
        /// Bytes of standard output beyond which the handler is stopped (Lambda's 6 MiB).
        public var responseLimit = 6 << 20
        /// Bytes of the log's tail kept for the result.
        public var logTailLimit = 4096
        /// Bytes of memory the function may use (its processes and what they cache), enforced
        /// by a memory cgroup of its own; nil leaves it uncapped.
        public var memoryLimit: Int?
        /// Where each sandbox gets an empty directory for its mounts.
        public var stateDirectory = "/run/thaw/sandboxes"

        public init(initCommand: [String]) { self.initCommand = initCommand }
    }

    public var options: Options

    public init(options: Options) { self.options = options }

    /// Runs `function` from `imageFile` with `event` on its standard input.
    ///
    /// - Parameter preload: what to load into the mounted image's caches as the handler starts
    ///   (see `ImagePreload`).
    /// - Parameter log: called with each piece of the handler's standard error as it arrives.
    /// - Throws: `SandboxError(.setupFailed)` only when the sandbox cannot be started at all;
    ///   every later failure is in the outcome, with whatever the handler wrote.
    public func run(imageFile: String, function: FunctionSpec, event: [UInt8], preload: [PreloadRun]? = nil,
                    log: @escaping @Sendable ([UInt8]) -> Void = { _ in }) async throws -> SandboxOutcome {
        try await launch().run(imageFile: imageFile, function: function, event: event, preload: preload, log: log)
    }

    /// Starts the sandbox's namespaces and its init, which waits for its plan (see
    /// `LaunchedSandbox`): a caller that launches before it knows the image hides the init's
    /// start behind its own work. The mount namespace is a copy of the caller's at this moment,
    /// so the image file's mount must already exist.
    ///
    /// - Throws: `SandboxError(.setupFailed)` when the work directory, the cgroup or the
    ///   process cannot be made; nothing is left behind then.
    public func launch() throws -> LaunchedSandbox {
        // A handler that exits before reading its event must not kill this process.
        signal(SIGPIPE, SIG_IGN)
        let workDirectory = try makeWorkDirectory()
        let cgroup: MemoryCgroup?
        do {
            cgroup = try makeMemoryCgroup(for: workDirectory)
        } catch {
            rmdir(workDirectory)
            throw error
        }
        let pipes: LaunchedSandbox.Pipes
        let child: ChildProcess
        do {
            pipes = try LaunchedSandbox.Pipes()
            do {
                child = try ChildProcess(executable: try Self.hostProgram("unshare"), arguments: unshareArguments(workDirectory: workDirectory),
                                         environment: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                         descriptors: pipes.childDescriptors)
            } catch {
                pipes.closeAll()
                throw error
            }
        } catch {
            cgroup?.remove()
            rmdir(workDirectory)
            throw error
        }
        pipes.closeChildEnds()
        return LaunchedSandbox(options: options, workDirectory: workDirectory, cgroup: cgroup, child: child, pipes: pipes)
    }

    /// util-linux `unshare` starting the init in new namespaces; the init reads its plan from
    /// descriptor `SandboxPlan.descriptor`, and is given the sandbox's work directory as its
    /// argument, so that `ps` tells sandboxes apart.
    func unshareArguments(workDirectory: String) -> [String] {
        var arguments = ["unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child", "--propagation", "private"]
        if options.network == .none { arguments.append("--net") }
        return arguments + ["--"] + options.initCommand + [workDirectory]
    }

    func makeWorkDirectory() throws -> String {
        do {
            try FileManager.default.createDirectory(atPath: options.stateDirectory, withIntermediateDirectories: true)
        } catch {
            throw SandboxError(.setupFailed, "cannot create \(options.stateDirectory): \(error.localizedDescription)")
        }
        let path = options.stateDirectory + "/" + "sandbox-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkdir(path, 0o700) == 0 else {
            throw SandboxError(.setupFailed, "cannot create \(path): \(SystemCalls.errorText())")
        }
        return path
    }

    /// The cgroup that caps a sandbox's memory, when `options.memoryLimit` asks for one.
    func makeMemoryCgroup(for workDirectory: String) throws -> MemoryCgroup? {
        guard let limit = options.memoryLimit else { return nil }
        return try MemoryCgroup.create(name: "thaw-" + (workDirectory as NSString).lastPathComponent, limit: limit)
    }

    /// The failure of a sandbox run with `options` whose process the kernel killed for its
    /// memory, or nil.
    static func outOfMemory(_ cgroup: MemoryCgroup?, options: Options) -> SandboxError? {
        guard let cgroup, let limit = options.memoryLimit, cgroup.outOfMemoryKills() > 0 else { return nil }
        return SandboxError(.outOfMemory, "the function ran out of memory: it was killed for using more than its \(limit >> 20) MiB")
    }

    static func describeFailure(_ termination: Termination, log: [UInt8]) -> String {
        var text: String
        switch termination {
        case .exited(let status) where status > 128:
            text = "the handler was killed by signal \(status - 128)"
        case .exited(let status):
            text = "the handler exited with status \(status)"
        case .signalled(let signal):
            text = "the sandbox was killed by signal \(signal)"
        }
        let last = String(decoding: log, as: UTF8.self).split(separator: "\n").last.map(String.init)
        if let last, !last.isEmpty { text += ": \(last)" }
        return text
    }

    static func describe(_ duration: Duration) -> String {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        return seconds == seconds.rounded() ? "\(Int(seconds)) s" : String(format: "%.3g s", seconds)
    }

    /// Waits (up to five seconds) for the kernel to detach an autoclear loop device after the
    /// sandbox's mount namespace went away; teardown there is asynchronous.
    static func waitUntilDetached(_ device: String) async -> Bool {
        let name = (device as NSString).lastPathComponent
        // On a thread of its own and deaf to cancellation: an interrupted run still waits.
        return await OwnThread.run {
            for _ in 0..<500 {
                if !LoopDevice.isAttached(name) { return true }
                usleep(10_000)
            }
            return !LoopDevice.isAttached(name)
        }
    }

    /// The absolute path of a host tool.
    static func hostProgram(_ name: String) throws -> String {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for directory in (path + ":/usr/sbin:/usr/bin:/sbin:/bin").split(separator: ":") {
            let candidate = directory + "/" + name
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw SandboxError(.setupFailed, "\(name) (util-linux) is not installed; the process sandbox needs it")
    }
}

