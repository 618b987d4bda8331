import Foundation
import Logging
import Synchronization
import ThawAgent
import ThawLambdaAPI
import ThawMetadata
import ThawSandbox
import ThawSandboxCore
import ThawSeal
import ThawStore

/// A function's deduplicated instance: its snapshot in the store and what restoring it needs.
struct KeptSnapshot: Sendable {
    var found: FoundSnapshot
    /// The VM set up as the snapshot was taken.
    var vm: MicroVMSandbox.Options
    /// The image's file in the agent's FUSE mount.
    var root: MicroVMSandbox.RootDisk
    /// Bytes its memory added to the store: chunks no snapshot stored before had.
    var storedBytes: UInt64
}

/// Runs invocations in microVMs, with a function's instances in three states:
///
/// - **cold**: nothing kept. The VM boots from the lazily loaded image and answers; then, in
///   the background, the function's VM is booted once more in snapshot mode and saved once its
///   handler waits, its RAM pushed into the store beside its image (`FunctionSnapshots`): equal
///   chunks stored once across every snapshot and compressed, so that this state holds no
///   memory on the worker.
/// - **deduplicated**: the snapshot is kept (`DeduplicatedInstances`, for the keep-dedup
///   period). An invocation restores it with its event, its RAM served lazily by the agent with
///   the recorded working set prefetched.
/// - **warm**: a VM restored from the snapshot ahead of the event, running, its handler waiting
///   (`RestoredMicroVM`, kept in the `InstancePool` for the keep-alive period). An invocation
///   hands it the event. A guest answers one event and powers off, so each answered invocation
///   is replaced by a VM restored ahead again, the way a warm process sandbox starts a new
///   handler after each answer.
///
/// The controller moves instances down: a warm VM past its keep-alive, or over the memory
/// budget, is stopped and its function stays deduplicated; a snapshot past its keep-dedup is
/// deleted from the store and its function is cold. A snapshot found in the store (left by an
/// agent before, or by another agent of the cluster) is used when it was taken for the same
/// image, handler, kernel, guest and VM settings.
struct MicroVMInvoker: FunctionInvoker {
    let agent: Agent
    /// Where the agent shows its images as files.
    let directory: String
    /// The VM's kernel, guest, accelerator, tmpfs and response limit; memory and timeout come
    /// from each function's settings.
    let vm: MicroVMSandbox.Options
    let slots: String
    let maxConcurrentStarts: Int
    let pool: InstancePool<RestoredMicroVM>
    let deduplicated: DeduplicatedInstances<KeptSnapshot>
    let metrics: InvocationMetrics
    let records: InstanceRecords
    let logger: Logger
    /// Snapshots being taken and VMs being restored ahead, cancelled and awaited at shutdown so
    /// that no qemu outlives the service.
    let background = BackgroundWork()
    let restoringAhead = RestoringAhead()
    /// Chunk size of a snapshot's memory in the store.
    let memoryChunkKiB = 64
    /// Time a boot or a restore may take before the handler's own timeout starts, as Lambda
    /// gives a function's init phase a limit of its own.
    static let initAllowance: Duration = .seconds(10)

    func invoke(_ function: FunctionRecord, settings: FunctionSettings, event: [UInt8]) async throws -> InvocationOutcome {
        let name = function.name.value
        let code = "\(function.manifestID) r\(settings.revision) \(settings.lastModified.timeIntervalSince1970)"
        let lease: InstancePool<RestoredMicroVM>.Lease
        do {
            let (granted, stale) = try await pool.acquire(name, code: code)
            lease = granted
            stopInBackground(stale, reason: .stale)
        } catch {
            metrics.refusedOne()
            throw error
        }
        let start: StartKind
        let outcome: SandboxOutcome
        switch lease {
        case .warm(let restored):
            start = .warm
            metrics.invoked(start)
            outcome = await restored.invoke(event: event)
            await records.remove(id: restored.id)
        case .cold:
            do {
                (start, outcome) = try await startFresh(function, settings: settings, code: code, event: event)
            } catch {
                if (error as? LambdaError)?.status == 429 { metrics.refusedOne() }
                stopInBackground(await pool.release(name, code: code, instance: nil), reason: .budget)
                throw error
            }
        }
        stopInBackground(await pool.release(name, code: code, instance: nil), reason: .budget)
        if outcome.failure == nil {
            background.run { await keepWarm(function, settings: settings, code: code) }
        }
        return InvocationOutcome(response: outcome.response, log: outcome.logTail, failure: outcome.failure?.message,
                                 errorType: InstanceInvoker.errorType(outcome.failure?.kind), start: start)
    }

    /// A start with nothing running: a restore of the function's snapshot when it has one,
    /// else a cold boot.
    func startFresh(_ function: FunctionRecord, settings: FunctionSettings, code: String, event: [UInt8]) async throws
        -> (StartKind, SandboxOutcome) {
        let name = function.name.value
        let (served, spec) = try await InstanceInvoker.open(function, settings: settings, agent: agent)
        let root = MicroVMSandbox.RootDisk.file(directory + "/" + served.fileName)
        if let kept = try await snapshot(of: function, settings: settings, code: code, served: served, spec: spec, root: root) {
            do {
                let restored = try await restore(kept, event: event)
                metrics.invoked(.deduplicated)
                let outcome = await restored.vm.invoke(event: nil)
                // The first restore's reads, event and answer included, are what later restores prefetch.
                if outcome.failure == nil { _ = try? await agent.finishRecording(restored.memoryID) }
                return (.deduplicated, outcome)
            } catch let error as SandboxError where error.kind != .cancelled {
                // A snapshot that cannot be restored would fail every start: it is dropped (and
                // deleted, when the store still holds this one) and the function boots cold.
                logger.warning("cannot restore the snapshot of \(name), booting it cold: \(error.message)")
                await forgetSnapshots(of: name, await deduplicated.drain(name))
            }
        }
        let slot = try startSlot()
        defer { slot.release() }
        metrics.invoked(.cold)
        var boot = options(for: settings)
        boot.timeout += Self.initAllowance
        let outcome: SandboxOutcome
        do {
            outcome = try await MicroVMSandbox(options: boot).run(root: root, function: spec, event: event)
        } catch let error as SandboxError {
            throw LambdaError.service("cannot start a microVM of \(name): \(error.message)")
        }
        if outcome.failure == nil { _ = try? await agent.finishRecording(served.id) }
        return (.cold, outcome)
    }

    /// Whether functions are kept deduplicated at all: not with `--keep-dedup-max 0`, which
    /// leaves cold instances only (warm ones are restored from snapshots).
    var deduplicating: Bool { deduplicated.policy.maximum > 0 }

    /// The VM options for a function: its memory (Lambda's MemorySize, in MiB) and timeout.
    func options(for settings: FunctionSettings) -> MicroVMSandbox.Options {
        var options = vm
        options.memoryMiB = settings.memorySize
        options.timeout = .seconds(Int64(settings.timeout))
        return options
    }

    /// One of the host's cold-start slots, or 429.
    func startSlot() throws -> StartSlot {
        do {
            return try StartSlots.acquire(directory: slots, limit: maxConcurrentStarts)
        } catch let error as SandboxError {
            throw LambdaError.tooManyRequests("Rate Exceeded. \(error.message)")
        }
    }

    /// The function's kept snapshot of `code`; else one in the store taken for this image with
    /// this handler and these VM settings, which it then keeps.
    func snapshot(of function: FunctionRecord, settings: FunctionSettings, code: String, served: ServedImage, spec: FunctionSpec,
                  root: MicroVMSandbox.RootDisk) async throws -> KeptSnapshot? {
        let name = function.name.value
        guard deduplicating else { return nil }
        if let kept = await deduplicated.snapshot(of: name, code: code) { return kept }
        guard let found = try? await FunctionSnapshots(agent: agent).find(served: served) else { return nil }
        var wanted = options(for: settings)
        wanted.kernelArguments.append("nokaslr")
        guard let (restoreOptions, mismatches) = try? FunctionSnapshots.restoreOptions(found.record, vm: wanted, function: spec),
              mismatches.isEmpty, restoreOptions.memoryMiB == wanted.memoryMiB, restoreOptions.tmpSize == wanted.tmpSize,
              restoreOptions.responseLimit == wanted.responseLimit, restoreOptions.kernelArguments == wanted.kernelArguments,
              await deduplicated.beginTaking(name, code: code) else { return nil }
        let kept = KeptSnapshot(found: found, vm: restoreOptions, root: root, storedBytes: 0)
        await forgetSnapshots(of: name, await deduplicated.finishTaking(name, code: code, snapshot: kept, storedBytes: 0))
        await records.add(id: snapshotInstanceID(name), function: function.name, state: "deduplicated")
        return kept
    }

    /// The instance id a function's deduplicated instance is recorded under, unique in the cluster.
    func snapshotInstanceID(_ function: String) -> String { "snapshot-\(records.agent)-\(function)" }

    /// Restores `kept` with its RAM served lazily by the agent: with `event` waiting for the
    /// guest, or (nil) ahead of one.
    func restore(_ kept: KeptSnapshot, event: [UInt8]?) async throws -> (vm: RestoredMicroVM, memoryID: String) {
        let stateDirectory = ThawRuntime.directory + "/snapshots/restore-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { try? FileManager.default.removeItem(atPath: stateDirectory) }
        let memory: ServedImage, files: MicroVMSandbox.SnapshotFiles, warm: [(offset: UInt64, length: Int)]
        do {
            (memory, files, warm) = try await FunctionSnapshots(agent: agent).openForRestore(
                kept.found, mountDirectory: directory, stateDirectory: stateDirectory)
        } catch {
            throw SandboxError(.setupFailed, CommandErrors.describe(error))
        }
        if warm.isEmpty {
            // No record yet (the first restore of a new snapshot): every stored chunk of the
            // memory is fetched into L1 at the width of a memory prefetch, ahead of the guest's
            // faults, which would otherwise wait for the origin one 4 KiB page at a time.
            let manifest = memory.image.manifest
            let stored = manifest.chunks.indices.filter { manifest.chunks[$0] != nil }.map { UInt32($0) }
            let everything = AccessRecord(manifestID: manifest.header.id, chunkCount: manifest.chunks.count, chunks: stored)
            let width = agent.configuration.memoryPrefetchConcurrency
            Task { await memory.image.prefetch(everything, concurrency: width) }
        }
        let vm = try await RestoredMicroVM.restore(MicroVMSandbox(options: kept.vm), root: kept.root, from: files, event: event,
                                                   warm: warm, restoreTimeout: kept.vm.timeout + Self.initAllowance)
        return (vm, memory.id)
    }

    /// After an answered invocation: the function gets its snapshot if it has none (taken in
    /// the background under a start slot; skipped when none is free), and a VM restored ahead
    /// of its next event, in place of the one that answered.
    func keepWarm(_ function: FunctionRecord, settings: FunctionSettings, code: String) async {
        let name = function.name.value
        var kept = await deduplicated.snapshot(of: name, code: code)
        if kept == nil, deduplicating, await deduplicated.beginTaking(name, code: code) {
            var taken: KeptSnapshot?
            do {
                taken = try await takeSnapshot(function, settings: settings)
            } catch {
                logger.warning("cannot snapshot \(name): \(CommandErrors.describe(error))")
            }
            // A snapshot not kept (its function changed meanwhile) is deleted; one it replaced
            // under the same key is not, the key holding the new record now.
            await forgetSnapshots(of: name, await deduplicated.finishTaking(name, code: code, snapshot: taken,
                                                                           storedBytes: taken?.storedBytes ?? 0))
            kept = await deduplicated.snapshot(of: name, code: code)
            if kept != nil { await records.add(id: snapshotInstanceID(name), function: function.name, state: "deduplicated") }
        }
        // A VM restored ahead waits for its event longer than a recording waits for reads: the
        // memory's working set is recorded by a restore with its event (a deduplicated start)
        // before any is restored ahead.
        guard let kept, await pool.keepAlive(of: name) > 0,
              let memory = try? await agent.open(kept.found.record.memoryManifestID, at: kept.found.memory, privatelyMapped: true),
              memory.prefetchRecord != nil || memory.savedRecord != nil,
              await restoringAhead.begin(name, idle: await pool.idleCount(of: name), limit: pool.limits.perFunction) else { return }
        defer { restoringAhead.end(name) }
        do {
            let restored = try await restore(kept, event: nil).vm
            await records.add(id: restored.id, function: function.name, state: "warm")
            stopInBackground(await pool.adopt(name, code: code, instance: restored), reason: await pool.isClosed ? .shutdown : .budget)
        } catch {
            logger.warning("cannot restore a warm instance of \(name): \(CommandErrors.describe(error))")
        }
    }

    /// Boots `function` in snapshot mode and stores its snapshot, under a start slot.
    func takeSnapshot(_ function: FunctionRecord, settings: FunctionSettings) async throws -> KeptSnapshot? {
        guard let slot = try? StartSlots.acquire(directory: slots, limit: maxConcurrentStarts) else { return nil }
        defer { slot.release() }
        let (served, spec) = try await InstanceInvoker.open(function, settings: settings, agent: agent)
        let root = MicroVMSandbox.RootDisk.file(directory + "/" + served.fileName)
        var boot = options(for: settings)
        boot.kernelArguments.append("nokaslr")
        boot.timeout += Self.initAllowance
        let taken = try await FunctionSnapshots(agent: agent).take(served: served, root: root, function: spec, vm: boot,
                                                                   memoryChunkKiB: memoryChunkKiB, patching: FunctionSnapshots.compressing,
                                                                   log: { _ in })
        var restoreOptions = boot
        restoreOptions.timeout = .seconds(Int64(settings.timeout))
        logger.info("snapshot of \(function.name) stored: \(taken.pushed.progress.chunksNew) new memory chunks (\(taken.pushed.progress.bytesUploaded) bytes), \(taken.pushed.progress.chunksPresent) already stored")
        return KeptSnapshot(found: taken.found, vm: restoreOptions, root: root, storedBytes: taken.pushed.progress.bytesUploaded)
    }

    func forget(_ function: FunctionName) async {
        stopInBackground(await pool.drain(function.value), reason: .stale)
        await forgetSnapshots(of: function.value, await deduplicated.drain(function.value))
    }

    /// The controller's tick: snapshots past their keep-dedup are deleted (their functions go
    /// cold), unless warm VMs of them are still kept; at shutdown, nothing more is kept or
    /// started, and the snapshots stay for the next agent.
    func tick(shuttingDown: Bool) async {
        if shuttingDown {
            let held = await deduplicated.close()
            await background.close()
            for name in held { await records.remove(id: snapshotInstanceID(name)) }
        } else {
            var warm: Set<String> = []
            for name in await pool.histories().keys where await pool.idleCount(of: name) > 0 { warm.insert(name) }
            let expired = await deduplicated.expire(histories: await pool.histories(), keeping: warm)
            metrics.stopped(expired.count, reason: .dedupExpired)
            for (name, snapshot) in expired { await forgetSnapshots(of: name, [snapshot]) }
        }
        metrics.update(deduplicated: await deduplicated.census)
    }

    /// Lets go of `function`'s `snapshots`: its instance record goes when it keeps none, and
    /// each snapshot record is deleted from the store, in the background, if it is still the one
    /// that was kept (a later snapshot of the same image, by this agent or another, replaces it
    /// under the same key). Their memory chunks go with the next rotation of the root.
    func forgetSnapshots(of function: String, _ snapshots: [KeptSnapshot]) async {
        guard !snapshots.isEmpty else { return }
        if await deduplicated.snapshot(of: function, code: nil) == nil { await records.remove(id: snapshotInstanceID(function)) }
        let store = agent.origin.store, keys = agent.origin.keys, logger = logger
        for kept in snapshots {
            background.run {
                do {
                    let image = try await agent.open(kept.found.record.imageManifestID, at: kept.found.image).image.manifest.header
                    let current = try await SnapshotRecord.open(try await store.get(kept.found.key), for: image, keys: keys,
                                                               what: "snapshot record \(kept.found.key)")
                    guard current.memoryManifestID == kept.found.record.memoryManifestID else { return }
                    try await store.delete(kept.found.key)
                } catch let error as StoreError where error.kind == .notFound {
                    return
                } catch {
                    logger.warning("cannot delete the snapshot \(kept.found.key): \(error)")
                }
            }
        }
    }

    func stopInBackground(_ instances: [RestoredMicroVM], reason: InvocationMetrics.StopReason) {
        guard !instances.isEmpty else { return }
        Task { await stop(instances, reason: reason, confirm: true) }
    }

    func stop(_ instances: [RestoredMicroVM], reason: InvocationMetrics.StopReason?, confirm: Bool = false) async {
        guard !instances.isEmpty else { return }
        if let reason { metrics.stopped(instances.count, reason: reason) }
        await Self.stop(instances, records: records)
        if confirm { await pool.confirmStopped(instances.count) }
    }

    static func stop(_ instances: [RestoredMicroVM], records: InstanceRecords) async {
        await withTaskGroup(of: Void.self) { group in
            for instance in instances {
                group.addTask {
                    await instance.stop()
                    await records.remove(id: instance.id)
                }
            }
        }
    }
}

/// Tasks started in the background that shutdown must not leave running.
final class BackgroundWork: Sendable {
    private let tasks = Mutex<(running: [UInt64: Task<Void, Never>], closed: Bool)>(([:], false))
    private let next = Atomic<UInt64>(0)

    /// Runs `work` in a task of its own, forgotten once it ends; nothing after `close`.
    func run(_ work: @escaping @Sendable () async -> Void) {
        let id = next.add(1, ordering: .relaxed).newValue
        tasks.withLock { tasks in
            guard !tasks.closed else { return }
            tasks.running[id] = Task { [weak self] in
                await work()
                _ = self?.tasks.withLock { $0.running.removeValue(forKey: id) }
            }
        }
    }

    /// Refuses new work, cancels every task still running and waits for them to end.
    func close() async {
        let running = tasks.withLock { tasks in
            tasks.closed = true
            return Array(tasks.running.values)
        }
        for task in running { task.cancel() }
        for task in running { await task.value }
    }
}

/// The VMs being restored ahead for each function, so that with those already idle they stay
/// within the per-function limit when several invocations end at once.
final class RestoringAhead: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    /// Counts one more restore of `function` if `idle` plus those under way stay below `limit`.
    func begin(_ function: String, idle: Int, limit: Int) -> Bool {
        counts.withLock { counts in
            guard idle + counts[function, default: 0] < limit else { return false }
            counts[function, default: 0] += 1
            return true
        }
    }

    func end(_ function: String) {
        counts.withLock { counts in
            counts[function, default: 1] -= 1
            if counts[function] == 0 { counts[function] = nil }
        }
    }
}
