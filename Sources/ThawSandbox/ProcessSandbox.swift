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
        /// The command that runs `SandboxInit` inside the namespaces, followed by the plan as
        /// JSON: `thaw sandbox-init`.
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
    /// - Parameter log: called with each piece of the handler's standard error as it arrives.
    /// - Throws: `SandboxError(.setupFailed)` only when the sandbox cannot be started at all;
    ///   every later failure is in the outcome, with whatever the handler wrote.
    public func run(imageFile: String, function: FunctionSpec, event: [UInt8],
                    log: @escaping @Sendable ([UInt8]) -> Void = { _ in }) async throws -> SandboxOutcome {
        // A handler that exits before reading its event must not kill this process.
        signal(SIGPIPE, SIG_IGN)
        let workDirectory = try makeWorkDirectory()
        defer { rmdir(workDirectory) }
        let cgroup: MemoryCgroup?
        do {
            cgroup = try makeMemoryCgroup(for: workDirectory)
        } catch {
            rmdir(workDirectory)
            throw error
        }
        defer { cgroup?.remove() }
        let plan = SandboxPlan(imageFile: imageFile, workDirectory: workDirectory, tmpSize: options.tmpSize,
                               network: options.network, deviceReadAheadKiB: options.deviceReadAheadKiB, function: function,
                               memoryCgroup: cgroup?.path)
        let arguments = try unshareArguments(plan)

        let input = try PipeEnds(), output = try PipeEnds(), errors = try PipeEnds(), reports = try PipeEnds()
        let child: ChildProcess
        do {
            child = try ChildProcess(executable: try Self.hostProgram("unshare"), arguments: arguments,
                                     environment: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                     descriptors: [0: input.read, 1: output.write, 2: errors.write, 3: reports.write])
        } catch {
            for descriptor in [input.read, input.write, output.read, output.write, errors.read, errors.write, reports.read, reports.write] {
                close(descriptor)
            }
            throw error
        }
        for descriptor in [input.read, output.write, errors.write, reports.write] { close(descriptor) }

        // unshare passes SIGKILL on to the init (--kill-child), and the death of a PID
        // namespace's init kills everything in it.
        let stopper = SandboxStopper(child: child)
        let limit = options.responseLimit
        let tail = LogTail(limit: options.logTailLimit)
        let timer = stopper.armTimeout(options.timeout, killing: "the sandbox")
        defer { timer.cancel() }

        let (response, termination, reportLines) = await withTaskCancellationHandler {
            async let fed: Void = PipeEnds.feed(input.write, event)
            async let stdout = PipeEnds.drain(output.read, limit: limit) {
                stopper.stop(SandboxError(.responseTooLarge, "the handler's response exceeds the limit of \(limit) bytes; the sandbox was killed"))
            }
            async let stderr = PipeEnds.drain(errors.read, limit: 0, chunk: { piece in
                log(piece)
                tail.append(piece)
            })
            async let reported = PipeEnds.drain(reports.read, limit: 1 << 20)
            let termination = await child.wait()
            _ = await (fed, stderr)
            return (await stdout.bytes, termination, await reported.bytes)
        } onCancel: {
            stopper.stop(SandboxError(.cancelled, "the start was interrupted; the sandbox was killed"))
        }
        let finished = MonotonicTime.now()

        var outcome = SandboxOutcome(response: response, logTail: tail.bytes, termination: termination,
                              finished: finished, leftovers: [])
        var setupFailure: SandboxError?
        for line in reportLines.split(separator: 0x0a) {
            guard let report = try? JSONDecoder().decode(SandboxReport.self, from: Data(line)) else { continue }
            switch report.stage {
            case .deviceAttached:
                outcome.deviceAttached = report.time
                outcome.loopDevice = report.detail
            case .rootMounted: outcome.rootMounted = report.time
            case .handlerStarted: outcome.handlerStarted = report.time
            case .handlerEnded: break
            case .failed:
                setupFailure = report.setupError
            }
        }
        if let reason = stopper.reason {
            outcome.failure = reason
        } else if let setupFailure {
            outcome.failure = setupFailure
        } else if termination != .exited(0) {
            outcome.failure = outOfMemory(cgroup) ?? SandboxError(.handlerFailed, Self.describeFailure(termination, log: outcome.logTail))
        }
        if let device = outcome.loopDevice, !(await Self.waitUntilDetached(device)) {
            outcome.leftovers.append("\(device) is still attached")
        }
        return outcome
    }

    /// util-linux `unshare` starting the init in new namespaces, with `plan` as its argument.
    func unshareArguments(_ plan: SandboxPlan) throws -> [String] {
        let planText = String(decoding: try JSONEncoder().encode(plan), as: UTF8.self)
        var arguments = ["unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "--kill-child", "--propagation", "private"]
        if options.network == .none { arguments.append("--net") }
        return arguments + ["--"] + options.initCommand + [planText]
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

    /// The failure of a sandbox whose process the kernel killed for its memory, or nil.
    func outOfMemory(_ cgroup: MemoryCgroup?) -> SandboxError? {
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

