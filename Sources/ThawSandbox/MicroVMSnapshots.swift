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
        let directory = try makeStateDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let requestPath = directory + "/request.img", responsePath = directory + "/response.img", qmp = directory + "/qmp.sock"
        // The event is waiting on the request disk before the guest resumes and polls it.
        try Self.writeDisks(request: try GuestProtocol.eventDisk(event), requestPath: requestPath, responsePath: responsePath,
                            responseSize: responseDiskSize)
        let restored = Shared<UInt64?>(nil)
        let arguments = arguments(root: root, request: requestPath, response: responsePath,
                                  memory: MemoryFile(path: files.ram, shared: false), qmp: qmp, incoming: true)
        let stateFile = files.state, ramPath = files.ram
        let warmer = Shared<PageCacheWarmer?>(nil)
        defer { warmer.withLock { $0?.stop() } }
        let run = try await launch(arguments, log: log, refuseHugePageAdvice: !hugePages, whenStarted: { stopper in
            Thread {
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
                    restored.withLock { $0 = MonotonicTime.now() }
                } catch let error as SandboxError {
                    stopper.stop(error)
                } catch {
                    stopper.stop(SandboxError(.setupFailed, "restore control failed: \(error)"))
                }
            }.start()
        })
        return (outcome(of: run, responsePath: responsePath), restored.withLock { $0 })
    }
}
