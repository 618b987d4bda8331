import Foundation
import Glibc
public import ThawSandboxCore

/// Runs a function's handler in a microVM: qemu `-M microvm` boots the host's kernel with
/// Thaw's initramfs (see `MicroVMAssets`); the root disk is the agent's NBD export, read by
/// qemu's own NBD client, or its FUSE file. The guest init (`thaw-guest`) mounts it read-only
/// under a tmpfs overlay, runs the handler with the event from a request disk, writes the
/// response to a response disk and powers off.
///
/// Nothing is mounted on the host, so teardown is the end of the qemu process: on timeout,
/// on cancellation, and when the guest is done.
public struct MicroVMSandbox: Sendable {
    public enum Accelerator: String, Sendable, CaseIterable {
        case kvm, tcg
    }

    public enum RootDisk: Sendable {
        /// An NBD URI qemu opens itself, such as `nbd+unix:///ID?socket=PATH`.
        case nbd(String)
        /// A file (the agent's FUSE file).
        case file(String)
    }

    public struct Options: Sendable {
        public var assets: MicroVMAssets
        public var accelerator: Accelerator
        public var qemu = "qemu-system-x86_64"
        public var memoryMiB = 512
        public var tmpSize = 64 << 20
        public var timeout: Duration = .seconds(30)
        public var responseLimit = 6 << 20
        public var logTailLimit = 4096
        /// Where each VM gets a directory for its request and response disks.
        public var stateDirectory = "/run/thaw/vms"
        /// More guest kernel arguments (snapshots boot with `nokaslr`).
        public var kernelArguments: [String] = []

        public init(assets: MicroVMAssets, accelerator: Accelerator) {
            self.assets = assets
            self.accelerator = accelerator
        }
    }

    /// The accelerator to use when asked for `auto`, and why when it is not KVM.
    ///
    /// KVM needs a usable `/dev/kvm`; on a host whose KVM is the nested PVM hypervisor
    /// (module `kvm_pvm`), stock guest kernels do not boot, so TCG is chosen there too.
    public static func chooseAccelerator() -> (Accelerator, note: String?) {
        guard access("/dev/kvm", R_OK | W_OK) == 0 else {
            return (.tcg, "no usable /dev/kvm: the microVM runs under TCG (emulation), which boots in seconds, not milliseconds")
        }
        if access("/sys/module/kvm_pvm", F_OK) == 0 {
            return (.tcg, "/dev/kvm here is the nested PVM hypervisor, which stock guest kernels cannot use: the microVM runs under TCG")
        }
        return (.kvm, nil)
    }

    public var options: Options

    public init(options: Options) { self.options = options }

    /// Guest RAM in a file rather than anonymous memory: shared for a snapshot boot (the file
    /// then holds the memory), private for a restore (the file is never written).
    struct MemoryFile {
        var path: String
        var shared: Bool
    }

    /// The qemu command line.
    func arguments(root: RootDisk, request: String, response: String, memory: MemoryFile? = nil, qmp: String? = nil,
                   incoming: Bool = false) -> [String] {
        var machineType = "microvm"
        var machine = ["-accel", "kvm", "-cpu", "host"]
        var append = "console=ttyS0 quiet loglevel=1 panic=-1 rdinit=/init"
        if options.accelerator == .tcg {
            // Without these the guest hangs calibrating its TSC under TCG.
            machineType = "microvm,pit=on,pic=on,rtc=on"
            machine = ["-accel", "tcg", "-cpu", "max"]
            append += " tsc_early_khz=2000000 no_timer_check"
        }
        if !options.kernelArguments.isEmpty { append += " " + options.kernelArguments.joined(separator: " ") }
        var extra: [String] = []
        if let memory {
            machineType += ",memory-backend=mem"
            extra += ["-object", "memory-backend-file,id=mem,size=\(options.memoryMiB)M,mem-path=\(memory.path),share=\(memory.shared ? "on" : "off")"]
        }
        if let qmp { extra += ["-qmp", "unix:\(qmp),server=on,wait=off"] }
        if incoming { extra += ["-incoming", "defer"] }
        let rootDrive: String
        switch root {
        case .nbd(let uri): rootDrive = "file=\(uri),format=raw,if=none,id=root,readonly=on"
        case .file(let path): rootDrive = "file=\(path),format=raw,if=none,id=root,readonly=on"
        }
        return [options.qemu, "-M", machineType] + machine + [
            "-m", "\(options.memoryMiB)", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none",
            "-serial", "stdio", "-no-reboot",
            "-kernel", options.assets.kernel, "-initrd", options.assets.initramfs, "-append", append,
            "-drive", rootDrive, "-device", "virtio-blk-device,drive=root",
            "-drive", "file=\(request),format=raw,if=none,id=request,readonly=on", "-device", "virtio-blk-device,drive=request",
            "-drive", "file=\(response),format=raw,if=none,id=response", "-device", "virtio-blk-device,drive=response",
        ] + extra
    }

    /// Boots the VM, runs `function` with `event`, and returns how it went.
    ///
    /// - Parameter log: each console line that is not one of the guest's progress lines: the
    ///   handler's standard error and what the kernel says.
    /// - Throws: `SandboxError(.setupFailed)` only when qemu cannot be started.
    public func run(root: RootDisk, function: FunctionSpec, event: [UInt8],
                    log: @escaping @Sendable ([UInt8]) -> Void = { _ in }) async throws -> SandboxOutcome {
        let directory = try makeStateDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let requestPath = directory + "/request.img", responsePath = directory + "/response.img"
        let request = GuestProtocol.Request(launch: function.launch, tmpSize: UInt64(options.tmpSize),
                                            responseLimit: UInt64(options.responseLimit), event: event)
        try Self.writeDisks(request: request.encoded(), requestPath: requestPath, responsePath: responsePath,
                            responseSize: responseDiskSize)
        let run = try await launch(arguments(root: root, request: requestPath, response: responsePath), log: log)
        return outcome(of: run, responsePath: responsePath)
    }

    /// The response disk's size: the answer's header and the largest response.
    var responseDiskSize: Int { GuestProtocol.responseOffset + options.responseLimit + 4096 }

    /// A directory of its own for one VM's disks and sockets.
    func makeStateDirectory() throws -> String {
        signal(SIGPIPE, SIG_IGN)
        let directory = options.stateDirectory + "/vm-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw SandboxError(.setupFailed, "cannot create \(directory): \(error.localizedDescription)")
        }
        return directory
    }

    /// How one qemu process went: its end, the guest's progress marks, the console's tail, and
    /// why it was stopped (timeout, interruption, a failed control step), if it was.
    struct QemuRun {
        var termination: Termination
        var marks: [String: UInt64]
        var tail: [UInt8]
        var stopped: SandboxError?
        var finished: UInt64
    }

    /// Starts qemu (`arguments[0]` found on the host), passes console lines to `log` except the
    /// guest's `thaw-guest: STEP` lines, which are time-stamped and handed to `onStep`, and
    /// waits for it to end, killing it on timeout or cancellation. `onStep` and `whenStarted`
    /// (called once qemu runs) may stop the VM through the stopper they are given.
    func launch(_ arguments: [String], log: @escaping @Sendable ([UInt8]) -> Void,
                onStep: @escaping @Sendable (String, SandboxStopper) -> Void = { _, _ in },
                refuseHugePageAdvice: Bool = false,
                whenStarted: (@Sendable (SandboxStopper) -> Void)? = nil) async throws -> QemuRun {
        let qemu = try await start(arguments, log: log, onStep: onStep, refuseHugePageAdvice: refuseHugePageAdvice)
        qemu.arm(options.timeout)
        whenStarted?(qemu.stopper)
        return await qemu.wait()
    }

    /// Starts qemu as `launch` does and returns while it runs, with no timeout armed yet.
    func start(_ arguments: [String], log: @escaping @Sendable ([UInt8]) -> Void,
               onStep: @escaping @Sendable (String, SandboxStopper) -> Void = { _, _ in },
               refuseHugePageAdvice: Bool = false) async throws -> QemuProcess {
        let qemu = try Self.hostProgram(options.qemu)
        var arguments = arguments
        arguments[0] = qemu
        let console = try PipeEnds()
        let null = open("/dev/null", O_RDWR | O_CLOEXEC)
        defer { close(null) }
        let child: ChildProcess
        do {
            let environment = ["PATH=/usr/local/bin:/usr/bin:/bin"], descriptors: [Int32: Int32] = [0: null, 1: console.write, 2: console.write]
            child = refuseHugePageAdvice
                ? try await ChildProcess.refusingHugePageAdvice(executable: qemu, arguments: arguments, environment: environment,
                                                                descriptors: descriptors)
                : try ChildProcess(executable: qemu, arguments: arguments, environment: environment, descriptors: descriptors)
        } catch {
            close(console.read)
            close(console.write)
            throw error
        }
        close(console.write)
        return QemuProcess(child: child, console: console.read, logTailLimit: options.logTailLimit, log: log, onStep: onStep)
    }

    /// What the guest answered on the response disk, as an outcome.
    func outcome(of run: QemuRun, responsePath: String) -> SandboxOutcome {
        var outcome = SandboxOutcome(response: [], logTail: run.tail, termination: nil,
                                     deviceAttached: run.marks["devices"], rootMounted: run.marks["root-mounted"],
                                     handlerStarted: run.marks["handler-started"], finished: run.finished, leftovers: [])
        if let reason = run.stopped {
            outcome.failure = reason
            return outcome
        }
        do {
            guard let answer = try Self.readAnswer(responsePath) else {
                let last = String(decoding: outcome.logTail, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
                outcome.failure = SandboxError(.setupFailed, "the microVM ended (qemu \(run.termination)) without an answer\(last.isEmpty ? "" : ": \(last)")")
                return outcome
            }
            outcome.termination = answer.header.termination
            if let failure = answer.header.failure {
                outcome.failure = SandboxError(answer.header.handlerMissing ? .handlerNotFound : .setupFailed, failure)
            } else if answer.header.responseLength > UInt64(options.responseLimit) {
                outcome.failure = SandboxError(.responseTooLarge, "the handler's response exceeds the limit of \(options.responseLimit) bytes")
            } else if answer.header.termination != .exited(0) {
                let status = answer.header.termination
                outcome.failure = SandboxError(.handlerFailed, ProcessSandbox.describeFailure(.exited(status.shellStatus), log: outcome.logTail))
            }
            outcome.response = Array(answer.response.prefix(options.responseLimit))
        } catch let error as SandboxError {
            outcome.failure = error
        } catch {
            outcome.failure = SandboxError(.setupFailed, "cannot read the response disk: \(error)")
        }
        return outcome
    }

    static func writeDisks(request: [UInt8], requestPath: String, responsePath: String, responseSize: Int) throws {
        var response = GuestProtocol.emptyResponseMagic
        response += [UInt8](repeating: 0, count: 4096 - response.count)
        guard FileManager.default.createFile(atPath: requestPath, contents: Data(request)),
              FileManager.default.createFile(atPath: responsePath, contents: Data(response)),
              truncate(responsePath, off_t((responseSize + 511) / 512 * 512)) == 0 else {
            throw SandboxError(.setupFailed, "cannot write the microVM's request and response disks in \((requestPath as NSString).deletingLastPathComponent)")
        }
    }

    static func readAnswer(_ path: String) throws -> (header: GuestProtocol.Response, response: [UInt8])? {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw SandboxError(.setupFailed, "cannot open the response disk \(path)")
        }
        defer { try? handle.close() }
        let header = Array(handle.readData(ofLength: GuestProtocol.responseOffset))
        guard let answer = try GuestProtocol.Response(decodingHeader: header) else { return nil }
        let length = Int(min(answer.responseLength, UInt64(Int32.max)))
        let body = Array(handle.readData(ofLength: length))
        return (answer, body)
    }

    static func hostProgram(_ name: String) throws -> String {
        if name.contains("/") { return name }
        do {
            return try ProcessSandbox.hostProgram(name)
        } catch {
            throw SandboxError(.setupFailed, "\(name) is not installed: the microVM sandbox needs qemu (Debian package qemu-system-x86)")
        }
    }
}

/// One running qemu: its console is read as it comes (progress marks, log lines, the tail) and
/// its end is awaited once, by `wait`. The timeout is armed by whoever knows when the work
/// starts: at launch for a boot, at the event for a VM restored ahead of it.
final class QemuProcess: Sendable {
    let child: ChildProcess
    let stopper: SandboxStopper
    let marks = Shared<[String: UInt64]>([:])
    let tail: LogTail
    private let timer = Shared<Task<Void, Never>?>(nil)
    private let ended = Shared<Task<Termination, Never>?>(nil)

    init(child: ChildProcess, console: Int32, logTailLimit: Int, log: @escaping @Sendable ([UInt8]) -> Void,
         onStep: @escaping @Sendable (String, SandboxStopper) -> Void) {
        self.child = child
        stopper = SandboxStopper(child: child)
        tail = LogTail(limit: logTailLimit)
        let lines = LineSplitter(), marks = marks, tail = tail, stopper = stopper
        ended.withLock {
            $0 = Task {
                async let consoleRead = PipeEnds.drain(console, limit: 0, chunk: { piece in
                    for line in lines.feed(piece) {
                        let text = String(decoding: line, as: UTF8.self)
                        // The kernel's own word on the restart that ends every run.
                        if text.hasSuffix("sysrq: Resetting") { continue }
                        if text.hasPrefix("thaw-guest: ") {
                            let step = String(text.dropFirst("thaw-guest: ".count))
                            marks.withLock { $0[step.hasPrefix("failed") ? "failed" : step] = MonotonicTime.now() }
                            // The answer is on the response disk, flushed to the host's file:
                            // the guest's power-off would only add its reboot path's time.
                            if step == "answered" { child.signal(SIGKILL) }
                            onStep(step, stopper)
                            if !step.hasPrefix("failed") { continue }
                        }
                        let withNewline = line + [0x0a]
                        log(withNewline)
                        tail.append(withNewline)
                    }
                })
                let termination = await child.wait()
                _ = await consoleRead
                return termination
            }
        }
    }

    /// Kills the VM with `.timedOut` once `timeout` has passed (replacing a timeout armed before).
    func arm(_ timeout: Duration) {
        let next = stopper.armTimeout(timeout, killing: "the microVM")
        timer.withLock { current in
            current?.cancel()
            current = next
        }
    }

    /// Cancels the armed timeout.
    func disarm() { timer.withLock { $0?.cancel() } }

    /// Waits for qemu's end; cancelling the waiting task kills the VM.
    func wait() async -> MicroVMSandbox.QemuRun {
        let ended = ended.withLock { $0! }
        let termination = await withTaskCancellationHandler {
            await ended.value
        } onCancel: {
            stopper.stop(SandboxError(.cancelled, "the start was interrupted; the microVM was killed"))
        }
        timer.withLock { $0?.cancel() }
        return MicroVMSandbox.QemuRun(termination: termination, marks: marks.withLock { $0 }, tail: tail.bytes, stopped: stopper.reason,
                       finished: MonotonicTime.now())
    }
}

/// Splits a byte stream into lines, keeping a partial last line for the next piece.
final class LineSplitter: Sendable {
    private let pending = Shared<[UInt8]>([])

    func feed(_ piece: [UInt8]) -> [[UInt8]] {
        pending.withLock { buffer in
            buffer += piece.filter { $0 != 0x0d }
            var lines: [[UInt8]] = []
            while let newline = buffer.firstIndex(of: 0x0a) {
                lines.append(Array(buffer[..<newline]))
                buffer.removeSubrange(...newline)
            }
            return lines
        }
    }
}
