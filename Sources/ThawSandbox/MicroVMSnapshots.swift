import Foundation
import Glibc
import ThawSandboxCore

/// Snapshot and restore of a function's microVM (qemu `-M microvm` with guest RAM in a file).
///
/// A snapshot boot runs the guest init in snapshot mode: it starts the handler with a pipe on
/// its standard input and says `ready` once the handler has loaded and waits for its event.
/// The host then stops the VM, saves the device state with the `x-ignore-shared` migration
/// capability (the RAM stays in its file, not in the state) and quits. A restore starts qemu
/// with the same devices, the RAM file mapped privately (it is never written; it may be the
/// agent's lazily served FUSE file) and `-incoming defer`, loads the state, writes the event to
/// the request disk, which the resumed guest polls, and lets the guest run to its answer.
extension MicroVMSandbox {
    /// A snapshot's two files on the host.
    public struct SnapshotFiles: Sendable {
        /// Guest RAM, as large as the VM's memory; pages the guest never touched are holes.
        public var ram: String
        /// The device state qemu saved (tens of kilobytes).
        public var state: String

        public init(ram: String, state: String) {
            self.ram = ram
            self.state = state
        }
    }

    /// When a snapshot's steps happened (`MonotonicTime`).
    public struct SnapshotTimings: Sendable {
        public var launched: UInt64
        public var ready: UInt64
        public var saved: UInt64
    }

    /// Boots `function` in snapshot mode and saves the VM once its handler is ready.
    ///
    /// - Throws: `SandboxError` — `.setupFailed` when qemu cannot start, the guest fails, the
    ///   handler ends before it is ready, or qemu refuses a step; `.timedOut` past the timeout.
    public func snapshot(root: RootDisk, function: FunctionSpec, into files: SnapshotFiles,
                         log: @escaping @Sendable ([UInt8]) -> Void = { _ in }) async throws -> SnapshotTimings {
        let directory = try makeStateDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for path in [files.ram, files.state] { unlink(path) }
        let requestPath = directory + "/request.img", responsePath = directory + "/response.img", qmp = directory + "/qmp.sock"
        let request = GuestProtocol.Request(launch: function.launch, tmpSize: UInt64(options.tmpSize),
                                            responseLimit: UInt64(options.responseLimit), event: [], snapshot: true)
        try Self.writeDisks(request: request.encoded(), requestPath: requestPath, responsePath: responsePath,
                            responseSize: responseDiskSize)
        guard truncate(requestPath, off_t(GuestProtocol.snapshotRequestDiskSize)) == 0 else {
            throw SandboxError(.setupFailed, "cannot size the request disk \(requestPath): \(SystemCalls.errorText())")
        }
        let launched = MonotonicTime.now()
        let saved = Shared<Result<UInt64, SandboxError>?>(nil)
        let arguments = arguments(root: root, request: requestPath, response: responsePath,
                                  memory: MemoryFile(path: files.ram, shared: true), qmp: qmp)
        let run = try await launch(arguments, log: log) { step, stopper in
            guard step == "ready" else { return }
            // Off the console reader: QMP blocks, and qemu's console must keep draining.
            Thread {
                do {
                    let control = try QMPConnection(path: qmp)
                    try control.execute("stop")
                    try control.execute("migrate-set-capabilities", ["capabilities": [["capability": "x-ignore-shared", "state": true]]])
                    try control.execute("migrate", ["uri": "exec:cat > '\(files.state)'"])
                    var status = ""
                    while status != "completed" {
                        status = try control.query("query-migrate", field: "status")
                        guard status != "failed", status != "cancelled" else {
                            throw SandboxError(.setupFailed, "qemu could not save the VM's state (migration \(status))")
                        }
                        if status != "completed" { usleep(5_000) }
                    }
                    saved.withLock { $0 = .success(MonotonicTime.now()) }
                    _ = try? control.execute("quit")
                } catch let error as SandboxError {
                    saved.withLock { $0 = .failure(error) }
                    stopper.stop(error)
                } catch {
                    let failure = SandboxError(.setupFailed, "snapshot control failed: \(error)")
                    saved.withLock { $0 = .failure(failure) }
                    stopper.stop(failure)
                }
            }.start()
        }
        switch saved.withLock({ $0 }) {
        case .success(let time)?:
            guard let ready = run.marks["ready"], FileManager.default.fileExists(atPath: files.state) else {
                throw SandboxError(.setupFailed, "qemu ended without writing the VM's state to \(files.state)")
            }
            return SnapshotTimings(launched: launched, ready: ready, saved: time)
        case .failure(let error)?:
            throw error
        case nil:
            if let reason = run.stopped { throw reason }  // timed out or interrupted
            // The guest never said ready: say why from its answer or its console.
            let outcome = outcome(of: run, responsePath: responsePath)
            if let failure = outcome.failure, outcome.termination == nil || failure.kind != .handlerFailed { throw failure }
            let detail = outcome.termination.map { "the handler ended (\($0)) before it was ready" } ?? "the guest never reported the handler ready"
            throw SandboxError(.handlerFailed, "cannot snapshot: \(detail)\(outcome.logTail.isEmpty ? "" : ": " + String(decoding: outcome.logTail, as: UTF8.self))")
        }
    }

    /// Restores a snapshot taken by `snapshot`, delivers `event`, and returns how it went.
    /// The VM must be configured as it was for the snapshot (memory, response limit, tmp size,
    /// kernel, initramfs and kernel arguments); the caller checks that.
    ///
    /// qemu is started with its huge-page advice refused, unless `hugePages` keeps it (only to
    /// measure its effect): qemu advises huge pages on all guest RAM, and on a file mapping the
    /// kernel then reads two 2 MiB folios for every fault, so each fault would fetch 4 MiB of
    /// the lazily served RAM file instead of the page the guest touched. Turning transparent
    /// huge pages off (per process or for the system) does not stop that read; refusing the
    /// advice does (`ChildProcess.refusingHugePageAdvice`).
    ///
    /// - Parameter warm: byte ranges of the RAM file (the recorded working set, in first-touch
    ///   order) loaded into the page cache from the moment qemu has opened the file, alongside
    ///   the state load and the guest (`PageCacheWarmer`).
    public func restore(root: RootDisk, from files: SnapshotFiles, event: [UInt8], hugePages: Bool = false,
                        warm: [(offset: UInt64, length: Int)] = [],
                        log: @escaping @Sendable ([UInt8]) -> Void = { _ in }) async throws -> (SandboxOutcome, restored: UInt64?) {
        let began = MonotonicTime.now()
        let vm: RestoredMicroVM
        do {
            vm = try await RestoredMicroVM.restore(self, root: root, from: files, event: event, hugePages: hugePages, warm: warm, log: log)
        } catch let error as SandboxError {
            return (SandboxOutcome(response: [], logTail: [], termination: nil, finished: MonotonicTime.now(), failure: error, leftovers: []), nil)
        }
        // One timeout for the whole start, the restore included.
        let spent = Duration.nanoseconds(Int64(MonotonicTime.now() - began))
        return (await vm.invoke(event: nil, timeout: max(.zero, options.timeout - spent)), vm.restored)
    }
}

/// A microVM restored from its function's snapshot and running: the guest's handler has loaded
/// and the guest polls its request disk for the event. Restored ahead of an invocation, it
/// answers one in the time the handler takes, with no boot and no state load on the way; it
/// answers exactly one, since the guest powers off after its answer, as after a cold boot.
///
/// It holds what qemu holds: the guest's pages it has touched (mapped privately from the
/// snapshot's RAM file, whose page cache every VM restored from that snapshot shares) and
/// qemu's own memory, measured as qemu's proportional set size.
public final class RestoredMicroVM: Sendable {
    public let id: String
    /// When the guest resumed (`MonotonicTime`).
    public let restored: UInt64
    let options: MicroVMSandbox.Options
    let directory: String
    let requestPath: String
    let responsePath: String
    let qemu: QemuProcess
    let warmer: Shared<PageCacheWarmer?>
    /// Set by the first `invoke` or `stop`: a VM answers once.
    private let used = Shared(false)

    init(id: String, restored: UInt64, options: MicroVMSandbox.Options, directory: String, requestPath: String, responsePath: String,
         qemu: QemuProcess, warmer: Shared<PageCacheWarmer?>) {
        self.id = id
        self.restored = restored
        self.options = options
        self.directory = directory
        self.requestPath = requestPath
        self.responsePath = responsePath
        self.qemu = qemu
        self.warmer = warmer
    }

    /// Starts qemu on the snapshot, loads its state and lets the guest run; returns once it
    /// runs. With `event`, the event already waits on the request disk (a restore for one
    /// invocation); without, the guest polls until `invoke` writes one. The restore may take
    /// `restoreTimeout` (default: the sandbox's timeout); the answer, the sandbox's timeout.
    ///
    /// - Throws: `SandboxError` when qemu cannot start or load the state, or the restore
    ///   takes longer than the sandbox's timeout; nothing is left running.
    public static func restore(_ sandbox: MicroVMSandbox, root: MicroVMSandbox.RootDisk, from files: MicroVMSandbox.SnapshotFiles,
                               event: [UInt8]? = nil, hugePages: Bool = false, warm: [(offset: UInt64, length: Int)] = [],
                               restoreTimeout: Duration? = nil,
                               log: @escaping @Sendable ([UInt8]) -> Void = { _ in }) async throws -> RestoredMicroVM {
        let directory = try sandbox.makeStateDirectory()
        let requestPath = directory + "/request.img", responsePath = directory + "/response.img", qmp = directory + "/qmp.sock"
        let qemu: QemuProcess
        do {
            let request = try event.map { try GuestProtocol.eventDisk($0) }
                ?? [UInt8](repeating: 0, count: GuestProtocol.snapshotRequestDiskSize)
            try MicroVMSandbox.writeDisks(request: request, requestPath: requestPath, responsePath: responsePath,
                                          responseSize: sandbox.responseDiskSize)
            let arguments = sandbox.arguments(root: root, request: requestPath, response: responsePath,
                                              memory: MicroVMSandbox.MemoryFile(path: files.ram, shared: false), qmp: qmp, incoming: true)
            qemu = try await sandbox.start(arguments, log: log, refuseHugePageAdvice: !hugePages)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        qemu.arm(restoreTimeout ?? sandbox.options.timeout)
        let warmer = Shared<PageCacheWarmer?>(nil)
        let stateFile = files.state, ramPath = files.ram
        let loaded: Result<UInt64, SandboxError> = await withTaskCancellationHandler {
            await OwnThread.run {
                do {
                    let control = try QMPConnection(path: qmp)
                    // qemu answers its monitor only after it has opened and mapped the RAM file.
                    if !warm.isEmpty { warmer.withLock { $0 = PageCacheWarmer.start(path: ramPath, ranges: warm) } }
                    try control.execute("migrate-set-capabilities", ["capabilities": [["capability": "x-ignore-shared", "state": true]]])
                    try control.execute("migrate-incoming", ["uri": "exec:cat '\(stateFile)'"])
                    var status = "inmigrate"
                    while status == "inmigrate" {
                        usleep(2_000)
                        status = try control.query("query-status", field: "status")
                    }
                    guard status == "paused" || status == "running" || status == "prelaunch" || status == "postmigrate" else {
                        throw SandboxError(.setupFailed, "qemu could not load the snapshot's state (status \(status))")
                    }
                    if status != "running" { try control.execute("cont") }
                    return .success(MonotonicTime.now())
                } catch let error as SandboxError {
                    return .failure(error)
                } catch {
                    return .failure(SandboxError(.setupFailed, "restore control failed: \(error)"))
                }
            }
        } onCancel: {
            qemu.stopper.stop(SandboxError(.cancelled, "the restore was interrupted; the microVM was killed"))
        }
        switch loaded {
        case .success(let time):
            // A VM restored ahead may wait for its event longer than any timeout: `invoke` arms one.
            qemu.disarm()
            return RestoredMicroVM(id: (directory as NSString).lastPathComponent, restored: time, options: sandbox.options,
                                   directory: directory, requestPath: requestPath, responsePath: responsePath, qemu: qemu, warmer: warmer)
        case .failure(let failure):
            qemu.stopper.stop(failure)
            let run = await qemu.wait()
            warmer.withLock { $0?.stop() }
            try? FileManager.default.removeItem(atPath: directory)
            // A qemu that ended by itself says why on its console better than its monitor can.
            let reason = run.stopped ?? failure
            let last = String(decoding: run.tail, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
            throw reason.kind == .setupFailed && !last.isEmpty ? SandboxError(.setupFailed, "\(reason.message): \(last)") : reason
        }
    }

    /// Delivers `event` (nil: the one written at the restore), waits for the answer within
    /// `timeout` (default: the sandbox's), and removes the VM.
    public func invoke(event: [UInt8]?, timeout: Duration? = nil) async -> SandboxOutcome {
        let first = used.withLock { done in
            defer { done = true }
            return !done
        }
        guard first else {
            return SandboxOutcome(response: [], logTail: [], termination: nil, finished: MonotonicTime.now(),
                                  failure: SandboxError(.setupFailed, "microVM \(id) has already answered"), leftovers: [])
        }
        defer { finish() }
        if let event {
            do {
                try deliver(event)
            } catch let error as SandboxError {
                qemu.stopper.stop(error)
            } catch {
                qemu.stopper.stop(SandboxError(.setupFailed, "cannot deliver the event: \(error)"))
            }
        }
        qemu.arm(timeout ?? options.timeout)
        let run = await qemu.wait()
        return MicroVMSandbox(options: options).outcome(of: run, responsePath: responsePath)
    }

    /// Kills the VM, unused.
    public func stop() async {
        used.withLock { $0 = true }
        qemu.stopper.stop(SandboxError(.cancelled, "microVM \(id) was stopped"))
        _ = await qemu.wait()
        finish()
    }

    /// Whether the VM still runs (it has not answered, failed or been stopped).
    public var isRunning: Bool { qemu.stopper.reason == nil && !used.withLock { $0 } && !qemu.child.hasEnded }

    /// The proportional set size of qemu now, in bytes.
    public var memoryHeld: UInt64 { ProcessTree.proportionalSetSize(of: qemu.child.pid) }

    /// Writes the event where the polling guest finds it: the body first, then the magic that
    /// says it is complete, so the guest never reads a length before its bytes.
    func deliver(_ event: [UInt8]) throws {
        let disk = try GuestProtocol.eventDisk(event)
        let used = GuestProtocol.eventMagic.count + 4 + event.count
        let descriptor = open(requestPath, O_WRONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw SandboxError(.setupFailed, "cannot open the request disk \(requestPath): \(SystemCalls.errorText())") }
        defer { close(descriptor) }
        let magic = GuestProtocol.eventMagic.count
        for range in [magic..<max(magic, used), 0..<magic] {
            var done = range.lowerBound
            while done < range.upperBound {
                let count = disk[done..<range.upperBound].withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, off_t(done)) }
                guard count > 0 else { throw SandboxError(.setupFailed, "cannot write the event to \(requestPath): \(SystemCalls.errorText())") }
                done += count
            }
        }
    }

    private func finish() {
        warmer.withLock { $0?.stop() }
        try? FileManager.default.removeItem(atPath: directory)
    }
}
