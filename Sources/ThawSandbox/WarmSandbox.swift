import CLinux
import Foundation
import Glibc
import Synchronization
public import ThawSandboxCore

/// A process sandbox kept between invocations: the namespaces, the image's loop mount, its
/// overlay and the chroot are built once, and each invocation starts only a new handler process
/// in them. A handler is started ahead (`prepare`) so that it has loaded and waits on its
/// standard input when the event comes, as a snapshot's handler does.
///
/// The host makes each handler's pipes and hands their far ends to the sandbox's init over a
/// Unix socket (`SandboxInit.serve`); it feeds the event and drains the response and log itself,
/// with the same limits as a cold `ProcessSandbox.run`. A timeout or an oversized response
/// kills the whole sandbox, as in a cold start; `stop` kills it too, and waits until its loop
/// device is gone. A sandbox is used by one invocation at a time.
public final class WarmSandbox: Sendable {
    /// Names this sandbox in records and logs.
    public let id = "sandbox-" + UUID().uuidString.lowercased().prefix(13)
    public let options: ProcessSandbox.Options
    /// When the loop device was attached and the root mounted (`MonotonicTime`).
    public let deviceAttached: UInt64
    public let rootMounted: UInt64
    let child: ChildProcess
    let control: ControlSocket
    let workDirectory: String
    let loopDevice: String
    let cgroup: MemoryCgroup?
    let ended: Task<Termination, Never>
    private let state = Mutex(State())

    struct State {
        /// The pipes of the handler started ahead, waiting for its event.
        var waiting: HandlerPipes?
        /// The start of the next handler, while it is under way.
        var preparing: Task<Void, any Error>?
        /// An invocation is running (it owns the control socket).
        var invoking = false
        /// What `measureMemory` found last.
        var memory: UInt64 = 0
        /// Why this sandbox can serve no more invocations.
        var retired: String?
        var stopped = false
    }

    /// The host's ends of one handler's standard input, output and error.
    struct HandlerPipes: Sendable {
        let input: Int32
        let output: Int32
        let errors: Int32
        let started: UInt64

        func close() { for descriptor in [input, output, errors] { Glibc.close(descriptor) } }
    }

    /// Builds the sandbox for `function` from `imageFile` and starts its first handler.
    ///
    /// - Throws: `SandboxError`: `.setupFailed` when the sandbox cannot be built (in at most
    ///   `options.timeout`), `.handlerNotFound` or `.invalidFunction` when the handler cannot start.
    public static func start(options: ProcessSandbox.Options, imageFile: String, function: FunctionSpec) async throws -> WarmSandbox {
        signal(SIGPIPE, SIG_IGN)
        let sandbox = ProcessSandbox(options: options)
        let workDirectory = try sandbox.makeWorkDirectory()
        // Until the sandbox is running, every failure undoes what was made so far.
        var undo: [() -> Void] = [{ rmdir(workDirectory) }]
        func undoAll() { undo.reversed().forEach { $0() } }
        let child: ChildProcess, hostEnd: ControlSocket, cgroup: MemoryCgroup?, diagnostics: Int32, planWrite: Int32
        let planText: [UInt8]
        do {
            cgroup = try sandbox.makeMemoryCgroup(for: workDirectory)
            undo.append { cgroup?.remove() }
            let plan = SandboxPlan(imageFile: imageFile, workDirectory: workDirectory, tmpSize: options.tmpSize, network: options.network,
                                   deviceReadAheadKiB: options.deviceReadAheadKiB, function: function, reusable: true,
                                   memoryCgroup: cgroup?.path)
            planText = try plan.encodedLine()
            let (host, sandboxEnd) = try ControlSocket.pair()
            hostEnd = host
            undo.append { host.close() }
            defer { close(sandboxEnd) }
            let pipe = try PipeEnds()
            defer { close(pipe.write) }
            undo.append { close(pipe.read) }
            let planPipe = try PipeEnds()
            defer { close(planPipe.read) }
            undo.append { close(planPipe.write) }
            let null = open("/dev/null", O_RDWR | O_CLOEXEC)
            guard null >= 0 else { throw SandboxError(.setupFailed, "cannot open /dev/null: \(SystemCalls.errorText())") }
            defer { close(null) }
            child = try ChildProcess(executable: try ProcessSandbox.hostProgram("unshare"), arguments: sandbox.unshareArguments(workDirectory: workDirectory),
                                     environment: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                                     descriptors: [0: null, 1: pipe.write, 2: pipe.write, 3: sandboxEnd,
                                                   SandboxPlan.descriptor: planPipe.read])
            diagnostics = pipe.read
            planWrite = planPipe.write
        } catch {
            undoAll()
            throw error
        }
        Task { await PipeEnds.feed(planWrite, planText) }
        let unshareErrors = Task { await PipeEnds.drain(diagnostics, limit: 4096).bytes }
        let ended = Task { await child.wait() }

        // The init reports the device and the root, or why it failed; a sandbox that takes
        // longer than the function's timeout to build is killed.
        let stopper = SandboxStopper(child: child)
        let timer = stopper.armTimeout(options.timeout, killing: "the sandbox being built")
        var device: String?, attached: UInt64?, mounted: UInt64?
        var failure: SandboxError?
        while mounted == nil && failure == nil {
            guard let report = await hostEnd.receiveReport() else { break }
            switch report.stage {
            case .deviceAttached: (device, attached) = (report.detail, report.time)
            case .rootMounted: mounted = report.time
            case .failed: failure = report.setupError
            case .handlerStarted, .handlerEnded: failure = SandboxError(.setupFailed, "the sandbox's init reported \(report.stage) while being built")
            }
        }
        timer.cancel()
        guard let device, let attached, let mounted, failure == nil else {
            child.signal(SIGKILL)
            _ = await ended.value
            let said = String(decoding: await unshareErrors.value, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            hostEnd.close()
            cgroup?.remove()
            rmdir(workDirectory)
            if let device { _ = await ProcessSandbox.waitUntilDetached(device) }
            throw stopper.reason ?? failure ?? SandboxError(.setupFailed, "the sandbox ended while being built" + (said.isEmpty ? "" : ": \(said)"))
        }
        let warm = WarmSandbox(options: options, deviceAttached: attached, rootMounted: mounted, child: child, control: hostEnd,
                               workDirectory: workDirectory, loopDevice: device, cgroup: cgroup, ended: ended)
        do {
            try await warm.prepare()
        } catch {
            _ = await warm.stop()
            throw error
        }
        return warm
    }

    init(options: ProcessSandbox.Options, deviceAttached: UInt64, rootMounted: UInt64, child: ChildProcess, control: ControlSocket,
         workDirectory: String, loopDevice: String, cgroup: MemoryCgroup?, ended: Task<Termination, Never>) {
        self.cgroup = cgroup
        self.options = options
        self.deviceAttached = deviceAttached
        self.rootMounted = rootMounted
        self.child = child
        self.control = control
        self.workDirectory = workDirectory
        self.loopDevice = loopDevice
        self.ended = ended
    }

    /// Why this sandbox takes no more invocations (a timeout, a failed handler, `stop`); nil
    /// while it does.
    public var retired: String? { state.withLock { $0.stopped ? "stopped" : $0.retired } }

    /// Starts the next handler, unless one already waits or an invocation is running, so the
    /// next invocation finds it loaded. Calls at once share one start.
    ///
    /// - Throws: `SandboxError` when the handler cannot start; the sandbox is retired then.
    public func prepare() async throws {
        let start = try state.withLock { state -> Task<Void, any Error>? in
            if let reason = state.stopped ? "stopped" : state.retired {
                throw SandboxError(.setupFailed, "the warm sandbox cannot start a handler: \(reason)")
            }
            // An invocation owns the control socket until it ends; it leaves no handler waiting.
            if state.waiting != nil || state.invoking { return nil }
            if let preparing = state.preparing { return preparing }
            let task = Task { try await self.startHandler() }
            state.preparing = task
            return task
        }
        try await start?.value
    }

    /// Asks the init for a handler on new pipes.
    private func startHandler() async throws {
        defer { state.withLock { $0.preparing = nil } }
        let input = try PipeEnds()
        let output: PipeEnds, errors: PipeEnds
        do {
            output = try PipeEnds()
            do {
                errors = try PipeEnds()
            } catch {
                output.closeBoth()
                throw error
            }
        } catch {
            input.closeBoth()
            throw error
        }
        let sent = control.send(.startHandler, descriptors: [input.read, output.write, errors.write])
        for descriptor in [input.read, output.write, errors.write] { close(descriptor) }
        let pipes = HandlerPipes(input: input.write, output: output.read, errors: errors.read, started: MonotonicTime.now())
        let report = sent ? await control.receiveReport() : nil
        guard let report, report.stage == .handlerStarted else {
            pipes.close()
            let error = report.map(\.setupError) ?? SandboxError(.setupFailed, "the warm sandbox's init is gone")
            retire(error.message)
            throw error
        }
        let kept = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            state.waiting = pipes
            return true
        }
        if !kept { pipes.close() }
    }

    /// Runs one invocation: `event` to the waiting handler (started now if none waits), its
    /// answer back. A handler that fails, runs past `options.timeout` or answers past the limit
    /// retires the sandbox; the outcome says why.
    ///
    /// - Parameter log: called with each piece of the handler's standard error as it arrives.
    public func invoke(event: [UInt8], log: @escaping @Sendable ([UInt8]) -> Void = { _ in }) async -> SandboxOutcome {
        do {
            try await prepare()
        } catch {
            let failure = error as? SandboxError ?? SandboxError(.setupFailed, "\(error)")
            return SandboxOutcome(response: [], logTail: [], termination: nil, finished: MonotonicTime.now(), failure: failure, leftovers: [])
        }
        guard let pipes = state.withLock({ state -> HandlerPipes? in
            guard let waiting = state.waiting else { return nil }
            state.waiting = nil
            state.invoking = true
            return waiting
        }) else {
            let failure = SandboxError(.setupFailed, "the warm sandbox was stopped before the invocation")
            return SandboxOutcome(response: [], logTail: [], termination: nil, finished: MonotonicTime.now(), failure: failure, leftovers: [])
        }
        defer { state.withLock { $0.invoking = false } }
        let killsBefore = cgroup?.outOfMemoryKills() ?? 0
        let stopper = SandboxStopper(child: child)
        let limit = options.responseLimit
        let tail = LogTail(limit: options.logTailLimit)
        let timer = stopper.armTimeout(options.timeout, killing: "the warm sandbox")
        defer { timer.cancel() }
        let control = self.control
        let (response, status) = await withTaskCancellationHandler {
            async let fed: Void = PipeEnds.feed(pipes.input, event)
            async let stdout = PipeEnds.drain(pipes.output, limit: limit) {
                stopper.stop(SandboxError(.responseTooLarge, "the handler's response exceeds the limit of \(limit) bytes; the sandbox was killed"))
            }
            async let stderr = PipeEnds.drain(pipes.errors, limit: 0, chunk: { piece in
                log(piece)
                tail.append(piece)
            })
            let ended: SandboxReport? = control.send(.waitForHandler) ? await control.receiveReport() : nil
            _ = await (fed, stderr)
            return (await stdout.bytes, ended?.stage == .handlerEnded ? ended?.status : nil)
        } onCancel: {
            stopper.stop(SandboxError(.cancelled, "the invocation was interrupted; the sandbox was killed"))
        }
        var outcome = SandboxOutcome(response: response, logTail: tail.bytes, termination: status.map { .exited($0) },
                                     rootMounted: rootMounted, handlerStarted: pipes.started, finished: MonotonicTime.now(),
                                     loopDevice: loopDevice, leftovers: [])
        if let reason = stopper.reason {
            outcome.failure = reason
        } else if let status, status != 0 {
            let killed = (cgroup?.outOfMemoryKills() ?? 0) > killsBefore
            outcome.failure = killed ? ProcessSandbox.outOfMemory(cgroup, options: options)
                : SandboxError(.handlerFailed, ProcessSandbox.describeFailure(.exited(status), log: outcome.logTail))
        } else if status == nil {
            outcome.failure = SandboxError(.setupFailed, "the warm sandbox's init ended during the invocation")
        }
        if let failure = outcome.failure { retire(failure.message) }
        return outcome
    }

    func retire(_ reason: String) {
        state.withLock { if $0.retired == nil { $0.retired = reason } }
    }

    /// Kills the sandbox and waits until its loop device is detached.
    ///
    /// - Returns: what was left behind (a loop device still attached); empty when nothing.
    public func stop() async -> [String] {
        let (waiting, preparing) = state.withLock { state -> (HandlerPipes?, Task<Void, any Error>?) in
            state.stopped = true
            defer { state.waiting = nil }
            return (state.waiting, state.preparing)
        }
        child.signal(SIGKILL)
        _ = await ended.value
        // A handler start under way ends once the init is gone; only then is the socket closed.
        _ = try? await preparing?.value
        waiting?.close()
        control.close()
        rmdir(workDirectory)
        cgroup?.remove()
        return await ProcessSandbox.waitUntilDetached(loopDevice) ? [] : ["\(loopDevice) is still attached"]
    }

    /// Memory this sandbox holds while it waits: the proportional set size of its processes
    /// (the init and the waiting handler; shared library pages split among their users) plus
    /// what its tmpfs holds. The image's page cache is shared by every instance and not counted.
    /// Measured by `measureMemory` (a walk of /proc), and kept.
    public var memoryHeld: UInt64 { state.withLock { $0.memory } }

    /// Measures what `memoryHeld` reports, now.
    public func measureMemory() {
        let processes = ProcessTree.descendants(of: child.pid)
        var bytes: UInt64 = processes.reduce(0) { $0 + ProcessTree.proportionalSetSize(of: $1) }
        // The overlay reports its upper layer's file system: the sandbox's tmpfs.
        if let initPID = processes.first(where: { $0 != child.pid }) {
            var info = statvfs()
            if statvfs("/proc/\(initPID)/root", &info) == 0 {
                bytes += UInt64(info.f_blocks - info.f_bfree) * UInt64(info.f_frsize)
            }
        }
        state.withLock { $0.memory = bytes }
    }
}

/// The host's end of a warm sandbox's control socket (`SOCK_SEQPACKET`, so every message
/// arrives whole): requests out, with descriptors attached; the init's reports back.
final class ControlSocket: Sendable {
    let descriptor: Int32
    private let closed = Mutex(false)

    init(descriptor: Int32) { self.descriptor = descriptor }

    /// A connected pair: the host's end (close-on-exec), and the end for the sandbox.
    static func pair() throws -> (host: ControlSocket, sandbox: Int32) {
        var ends: [Int32] = [0, 0]
        guard socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &ends) == 0 else {
            throw SandboxError(.setupFailed, "cannot create the warm sandbox's control socket: \(SystemCalls.errorText())")
        }
        _ = fcntl(ends[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(ends[1], F_SETFD, FD_CLOEXEC)
        return (ControlSocket(descriptor: ends[0]), ends[1])
    }

    /// Sends one request; false when the init is gone.
    func send(_ request: SandboxInit.ControlRequest, descriptors: [Int32] = []) -> Bool {
        var byte = request.rawValue
        return thaw_send_descriptors(descriptor, &byte, 1, descriptors, Int32(descriptors.count)) == 1
    }

    /// The init's next report; nil once it is gone.
    func receiveReport() async -> SandboxReport? {
        await OwnThread.run { [descriptor] in
            var buffer = [UInt8](repeating: 0, count: 8192)
            var count = 0
            repeat {
                count = buffer.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            } while count < 0 && errno == EINTR
            guard count > 0 else { return nil }
            return try? JSONDecoder().decode(SandboxReport.self, from: Data(buffer[0..<count].filter { $0 != 0x0a }))
        }
    }

    /// Ends both directions: a receive under way returns, and later sends and receives fail.
    /// The descriptor itself is closed only when nothing can use it any more (deinit), so its
    /// number cannot be reused under a late call.
    func close() {
        closed.withLock { done in
            if !done { _ = shutdown(descriptor, Int32(SHUT_RDWR)) }
            done = true
        }
    }

    deinit { Glibc.close(descriptor) }
}

/// Processes of the host seen through /proc.
enum ProcessTree {
    /// `root` and every process below it.
    static func descendants(of root: Int32) -> [Int32] {
        var children: [Int32: [Int32]] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), let stat = SystemCalls.readFile("/proc/\(pid)/stat"),
                  let close = stat.lastIndex(of: ")") else { continue }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let parent = Int32(fields[1]) { children[parent, default: []].append(pid) }
        }
        var found = [root], index = 0
        while index < found.count {
            found += children[found[index]] ?? []
            index += 1
        }
        return found
    }

    /// The `Pss` of `smaps_rollup`, in bytes; 0 for a process gone.
    static func proportionalSetSize(of pid: Int32) -> UInt64 {
        guard let text = SystemCalls.readFile("/proc/\(pid)/smaps_rollup"),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Pss:") }),
              let kib = UInt64(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kib * 1024
    }
}
