import ArgumentParser
import Crypto
import Foundation
import ThawAgent
import ThawBinary
import ThawMedes
import ThawMetadata
import ThawPush
import ThawSandbox
import ThawSandboxCore
import ThawSeal
import ThawServe
import ThawStore

/// `thaw snapshot FUNCTION [thaw run's options]`: boots the function's microVM until its handler
/// waits for an event, saves it, and pushes its memory and state next to its image manifest.
struct SnapshotCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snapshot",
        abstract: "Snapshot a function's microVM once its handler is ready, and store the snapshot with its image.",
        discussion: """
            FUNCTION is a function name, a manifest id or an image, as for thaw run, and thaw run's options \
            apply (--vm-memory, --tmp-size, --response-limit, --kernel, --guest, --accel, --env, \
            --entrypoint, --kernel-arg, a command after --, the store and cache options), with \
            --memory-chunk-kib (64), --no-nokaslr, --base, --patch-limit (2048) and --no-memory-compression. \
            The guest boots with its RAM in a file; once the handler has loaded and waits for its event, qemu \
            saves the VM. The RAM is pushed as a manifest of its own (untouched and zero pages are not stored, \
            equal chunks are stored once across snapshots, chunks are stored zstd-compressed where that saves \
            an eighth) and a sealed snapshot record beside the image manifest names it. With --base BASE (a \
            function or image whose snapshot was taken without --base), chunks the store lacks are kept as \
            deltas against BASE's memory where its pages are identical or similar. Later thaw run FUNCTION \
            restores it.
            """)

    @Argument(parsing: .captureForPassthrough, help: "FUNCTION, then any of thaw run's options.")
    var arguments: [String] = []

    func run() async throws {
        if arguments.contains("--help") || arguments.contains("-h") {
            print(Self.helpMessage())
            return
        }
        // Before any `--`: what follows it is the handler's command.
        var options = arguments
        options.insert("--snapshot-only", at: options.firstIndex(of: "--") ?? options.endIndex)
        var run = try Run.parse(options)
        try run.validate()
        try await run.run()
    }
}

extension Run {
    /// Boots the function in snapshot mode and stores what it saved.
    func takeSnapshot(agent: Agent, served: ServedImage, root: MicroVMSandbox.RootDisk, function: FunctionSpec,
                      options: ProcessSandbox.Options, interrupt: Interrupt, breakdown: inout StartBreakdown) async throws
        -> (SandboxOutcome, StartBreakdown) {
        var vm = try microVMOptions(options)
        if nokaslr { vm.kernelArguments.append("nokaslr") }
        let header = served.image.manifest.header
        // The base is checked and read before the boot, so a wrong one costs no boot.
        var patching: FilePatching?
        if let base {
            patching = try await loadBase(base, agent: agent, for: header)
        } else if memoryCompression {
            patching = FunctionSnapshots.compressing
        }
        let show: @Sendable ([UInt8]) -> Void = { piece in FileHandle.standardError.write(Data(piece)) }
        let snapshots = FunctionSnapshots(agent: agent), chunkKiB = memoryChunkKib, bootOptions = vm, chunkPatching = patching
        let taking = Task {
            try await snapshots.take(served: served, root: root, function: function, vm: bootOptions, memoryChunkKiB: chunkKiB,
                                     patching: chunkPatching, log: show)
        }
        interrupt.onFire { taking.cancel() }
        let taken: FunctionSnapshots.Taken
        do {
            taken = try await taking.value
        } catch let error as SandboxError {
            throw ValidationFailure("cannot snapshot \(self.function): \(error.message)")
        }
        let (record, key, pushed, timings) = (taken.found.record, taken.found.key, taken.pushed, taken.timings)
        let state = record.deviceState
        let progress = pushed.progress
        let deltaKind = patching?.baseManifestID.map { "compressed, or patched against base \($0.prefix(16))" } ?? "compressed"
        let report = """
            snapshot of \(header.id.prefix(16)) stored as \(key)
              handler ready after \(String(format: "%.2f", MonotonicTime.seconds(from: timings.launched, to: timings.ready))) s, \
            saved in \(String(format: "%.3f", MonotonicTime.seconds(from: timings.ready, to: timings.saved))) s
              memory: \(vm.memoryMiB) MiB in \(memoryChunkKib) KiB chunks, manifest \(pushed.manifestID.prefix(16)): \
            \(pushed.dataChunks) chunks with data, \(pushed.zeroChunks) untouched or zero; \
            \(progress.chunksNew) uploaded (\(mib(progress.bytesUploaded))), \(progress.chunksPresent) already stored\
            \(patching == nil ? "" : ", \(pushed.patchedChunks) of them as deltas (\(deltaKind))")
              device state: \(state.count / 1024) KiB; kernel arguments: \(record.kernelArguments.isEmpty ? "none" : record.kernelArguments)

            """
        FileHandle.standardError.write(Data(report.utf8))
        breakdown.manifestID = served.id
        return (SandboxOutcome(response: [], logTail: [], termination: .exited(0), finished: MonotonicTime.now(), leftovers: []), breakdown)
    }

    /// The base snapshot `reference` names (a function name or an image manifest id in the
    /// image's root), read whole into pages to encode deltas against.
    ///
    /// - Throws: `ValidationFailure` when there is no such image or snapshot, it is in another
    ///   root or of another tenant, or its memory is itself stored against a base.
    func loadBase(_ reference: String, agent: Agent, for image: ManifestHeader) async throws -> FilePatching {
        let store = agent.origin.store, keys = agent.origin.keys
        do {
            var manifestReference = reference
            if let name = try? FunctionName(reference),
               let named = try await storeArguments.withMetadata(create: false, { try await $0?.function(named: name) }) {
                guard named.root == image.root else {
                    throw ValidationFailure("the base \(reference) is in root \(named.root), not in \(image.root) with this image: garbage collection has not copied it forward yet")
                }
                manifestReference = named.manifestID
            }
            let found = try await ManifestLookup.find(manifestReference, in: store, root: image.root)
            let baseImage = try await Manifest.open(found.bytes, keys: keys, what: "manifest \(found.key)").header
            guard baseImage.tenant == image.tenant else {
                throw ValidationFailure("the base \(reference) belongs to tenant \(baseImage.tenant), not \(image.tenant)")
            }
            let recordKey = StoreLayout.snapshot(id: baseImage.id, root: image.root, tenant: image.tenant)
            let record: SnapshotRecord
            do {
                record = try await SnapshotRecord.open(try await store.get(recordKey), for: baseImage, keys: keys, what: "snapshot record \(recordKey)")
            } catch let error as StoreError where error.kind == .notFound {
                throw ValidationFailure("the base \(reference) (manifest \(baseImage.id.prefix(16))) has no snapshot: take one with thaw snapshot first")
            }
            let memoryKey = StoreLayout.manifest(id: record.memoryManifestID, root: image.root, tenant: image.tenant)
            let memory = try await Manifest.open(try await store.get(memoryKey), keys: keys, what: "memory manifest \(memoryKey)")
            let stored = try await StoredMemory.open(memory, store: store, keys: keys)
            if let itsBase = stored.patches?.baseManifestID {
                throw ValidationFailure("the snapshot of \(reference) is itself stored against base \(itsBase.prefix(16)); a base is stored against no base: take it again without --base")
            }
            let pages = try await Self.basePages(of: stored, patchLimit: patchLimit)
            let pageSize = pages.pageSize
            return FilePatching(baseManifestID: memory.header.id) { chunk, index in
                pages.delta(for: chunk, firstPage: index * chunk.count / pageSize)
            }
        } catch let failure as ValidationFailure {
            throw failure
        } catch {
            throw ValidationFailure("cannot use \(reference) as the base: \(CommandErrors.describe(error))")
        }
    }

    /// Every non-zero page of a base snapshot's RAM, read from the store eight chunks at once.
    static func basePages(of memory: StoredMemory, patchLimit: Int) async throws -> BaseSnapshotPages {
        var pages = BaseSnapshotPages(patchLimit: patchLimit)
        let stored = memory.manifest.chunks.indices.filter { memory.manifest.chunks[$0] != nil }
        let chunkSize = Int(memory.manifest.header.chunkSize), pageSize = pages.pageSize
        try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
            var next = 0
            func start() {
                guard next < stored.count else { return }
                let index = stored[next]
                next += 1
                group.addTask { (index, try await memory.chunk(index)) }
            }
            for _ in 0..<8 { start() }
            while let (index, chunk) = try await group.next() {
                pages.add(memory: chunk, firstPage: index * chunkSize / pageSize)
                start()
            }
        }
        return pages
    }

    /// Restores `snapshot` with its RAM served lazily by the agent, and delivers the event.
    ///
    /// - Throws: `ValidationFailure` naming the difference when the snapshot was taken with
    ///   another kernel, initramfs, handler, memory size or kernel arguments than this start has.
    func restoreSnapshot(_ snapshot: FoundSnapshot, agent: Agent, served: ServedImage, root: MicroVMSandbox.RootDisk, directory: String,
                         function: FunctionSpec, options: ProcessSandbox.Options, event: [UInt8], interrupt: Interrupt,
                         breakdown: inout StartBreakdown) async throws -> (SandboxOutcome, StartBreakdown) {
        // The image's record is what a cold boot read; the restored guest has that in its page
        // cache already, and the memory's prefetch should have the origin to itself.
        served.stopPrefetch()
        let record = snapshot.record
        let (vm, mismatches) = try FunctionSnapshots.restoreOptions(record, vm: try microVMOptions(options), function: function)
        guard mismatches.isEmpty else {
            throw ValidationFailure("the snapshot \(snapshot.key) does not match this start: \(mismatches.joined(separator: "; ")) changed since it was taken; take it again with thaw snapshot, or start with --cold")
        }
        let stateDirectory = ThawRuntime.directory + "/snapshots/restore-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: stateDirectory) }
        let (memory, files, warm) = try await FunctionSnapshots(agent: agent).openForRestore(snapshot, mountDirectory: directory,
                                                                                            stateDirectory: stateDirectory)
        let show: @Sendable ([UInt8]) -> Void = { piece in FileHandle.standardError.write(Data(piece)) }
        let sandbox = MicroVMSandbox(options: vm)
        let restoring = Task {
            try await sandbox.restore(root: root, from: files, event: event, hugePages: restoreHugePages, warm: warm, log: show)
        }
        interrupt.onFire { restoring.cancel() }
        let (outcome, restored) = try await restoring.value
        breakdown.restored = restored
        breakdown.finished = outcome.finished
        breakdown.manifestID = served.id
        breakdown.imageSize = served.size
        breakdown.chunkSize = UInt64(served.image.manifest.header.chunkSize)
        breakdown.reads = served.image.statistics
        breakdown.prefetchChunks = served.prefetchRecord?.chunks.count
        var memoryBreakdown = StartBreakdown.Memory(manifestID: memory.id, size: memory.size, reads: memory.image.statistics)
        memoryBreakdown.prefetchChunks = memory.prefetchRecord?.chunks.count
        if outcome.failure == nil {
            breakdown.recordedChunks = try? await agent.finishRecording(served.id)
            memoryBreakdown.recordedChunks = try? await agent.finishRecording(memory.id)
        }
        breakdown.memory = memoryBreakdown
        return (outcome, breakdown)
    }
}

