import Crypto
import Foundation
import ThawAgent
import ThawBinary
import ThawMedes
import ThawPush
import ThawSandbox
import ThawSandboxCore
import ThawSeal
import ThawServe
import ThawStore

/// A snapshot found for a served image, with its record.
struct FoundSnapshot: Sendable {
    var record: SnapshotRecord
    /// Where the image manifest the snapshot belongs to is kept.
    var image: ManifestLocation
    /// Where the snapshot record is kept.
    var key: StoreKey { image.snapshot }
    /// Where the snapshot's memory manifest is kept: beside its image's, in the same root.
    var memory: ManifestLocation { ManifestLocation(id: record.memoryManifestID, root: image.root, tenant: image.tenant) }
}

/// Functions' microVM memory snapshots in the store, beside their image manifests: taking one
/// (a boot until the handler waits, saved, its RAM pushed as a manifest of its own), finding
/// one, and checking and opening one for a restore. `thaw snapshot` and `thaw run` use it, and
/// so do serve-api's microVM instances.
struct FunctionSnapshots: Sendable {
    let agent: Agent

    /// What `take` stored.
    struct Taken: Sendable {
        var found: FoundSnapshot
        var pushed: FilePushReport
        var timings: MicroVMSandbox.SnapshotTimings
    }

    /// Boots `function` in snapshot mode on `root`, saves it once its handler waits, pushes its
    /// RAM (chunks of `memoryChunkKiB`, through `patching` when given) and stores the sealed
    /// snapshot record beside `served`'s manifest, replacing any record there.
    ///
    /// - Throws: `SandboxError` when the boot or the save fails; store errors as they come.
    func take(served: ServedImage, root: MicroVMSandbox.RootDisk, function: FunctionSpec, vm: MicroVMSandbox.Options,
              memoryChunkKiB: Int, patching: FilePatching?, log: @escaping @Sendable ([UInt8]) -> Void) async throws -> Taken {
        let header = served.image.manifest.header
        let directory = ThawRuntime.directory + "/snapshots/take-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let files = MicroVMSandbox.SnapshotFiles(ram: directory + "/ram", state: directory + "/state")
        let timings = try await MicroVMSandbox(options: vm).snapshot(root: root, function: function, into: files, log: log)

        var pushOptions = PushOptions()
        pushOptions.root = header.root
        pushOptions.tenant = header.tenant
        pushOptions.chunkSize = UInt64(memoryChunkKiB * 1024)
        let pushed = try await Pusher(store: agent.origin.store, keys: agent.origin.keys, options: pushOptions)
            .pushFile(at: files.ram, patching: patching)
        guard let state = FileManager.default.contents(atPath: files.state) else {
            throw ValidationFailure("cannot read the saved VM state \(files.state)")
        }
        let record = SnapshotRecord(
            imageManifestID: header.id, memoryManifestID: pushed.manifestID, memoryMiB: UInt32(vm.memoryMiB),
            responseLimit: UInt64(vm.responseLimit), tmpSize: UInt64(vm.tmpSize),
            kernelDigest: try Self.fileDigest(vm.assets.kernel), initramfsDigest: try Self.fileDigest(vm.assets.initramfs),
            launchDigest: Self.launchDigest(function.launch), kernelArguments: vm.kernelArguments.joined(separator: " "),
            accelerator: vm.accelerator.rawValue, takenAtMilliseconds: UInt64(Date().timeIntervalSince1970 * 1000),
            deviceState: Array(state))
        let location = ManifestLocation(header)
        try await agent.origin.store.put(location.snapshot, try await record.sealed(tenant: header.tenant, keys: agent.origin.keys))
        return Taken(found: FoundSnapshot(record: record, image: location), pushed: pushed, timings: timings)
    }

    /// Memory chunks stored zstd-compressed (as deltas that name no base page) when that saves
    /// at least an eighth of a chunk.
    static let compressing = FilePatching(baseManifestID: nil) { chunk, _ in
        ChunkDelta.compressed(chunk, pageSize: SnapshotDeduplicator.pageSize)
    }

    /// The snapshot of `served`'s image, if the store holds one. `asOpened` takes the store's
    /// answer from when the image was opened (`ServedImage.snapshotRecordAtOpen`), for a start
    /// that has just opened it; otherwise the store is asked now.
    ///
    /// - Throws: `ValidationFailure` when the record is there but cannot be opened.
    func find(served: ServedImage, asOpened: Bool = false) async throws -> FoundSnapshot? {
        let header = served.image.manifest.header
        let location = ManifestLocation(header)
        let key = location.snapshot
        let bytes: [UInt8]
        switch asOpened ? served.snapshotRecordAtOpen : .unknown {
        case .absent:
            return nil
        case .present(let sealed):
            bytes = sealed
        case .unknown:
            do {
                bytes = try await agent.origin.store.get(key)
            } catch let error as StoreError where error.kind == .notFound {
                return nil
            }
        }
        do {
            return FoundSnapshot(record: try await SnapshotRecord.open(bytes, for: header, keys: agent.origin.keys, what: "snapshot record \(key)"),
                                 image: location)
        } catch {
            throw ValidationFailure(CommandErrors.describe(error))
        }
    }

    /// `vm` set up as the snapshot was taken (memory, response limit, tmp size, kernel
    /// arguments), and what else differs between the snapshot and this start: empty when the
    /// snapshot can be restored for `function`.
    static func restoreOptions(_ record: SnapshotRecord, vm: MicroVMSandbox.Options, function: FunctionSpec) throws
        -> (options: MicroVMSandbox.Options, mismatches: [String]) {
        var vm = vm
        vm.memoryMiB = Int(record.memoryMiB)
        vm.responseLimit = Int(record.responseLimit)
        vm.tmpSize = Int(record.tmpSize)
        vm.kernelArguments = record.kernelArguments.split(separator: " ").map(String.init)
        var mismatches: [String] = []
        if try fileDigest(vm.assets.kernel) != record.kernelDigest { mismatches.append("the kernel \(vm.assets.kernel)") }
        if try fileDigest(vm.assets.initramfs) != record.initramfsDigest { mismatches.append("the initramfs (guest init or modules)") }
        if launchDigest(function.launch) != record.launchDigest { mismatches.append("the handler's command, environment, directory or user") }
        if record.accelerator != vm.accelerator.rawValue { mismatches.append("the accelerator (\(record.accelerator), not \(vm.accelerator.rawValue))") }
        return (vm, mismatches)
    }

    /// The snapshot's RAM served lazily (privately mapped: a restored guest never writes the
    /// file), the files a restore reads (its device state written under `stateDirectory`), and
    /// the recorded working set to load into the page cache as the guest starts (the record the
    /// memory had when the agent opened it, or the one it saved since).
    func openForRestore(_ snapshot: FoundSnapshot, mountDirectory: String, stateDirectory: String) async throws
        -> (memory: ServedImage, files: MicroVMSandbox.SnapshotFiles, warm: [(offset: UInt64, length: Int)]) {
        let record = snapshot.record
        let memory: ServedImage
        do {
            memory = try await agent.open(record.memoryManifestID, at: snapshot.memory, privatelyMapped: true)
        } catch {
            throw ValidationFailure("cannot serve the snapshot's memory: \(CommandErrors.describe(error))")
        }
        try FileManager.default.createDirectory(atPath: stateDirectory, withIntermediateDirectories: true)
        let statePath = stateDirectory + "/state"
        guard FileManager.default.createFile(atPath: statePath, contents: Data(record.deviceState)) else {
            throw ValidationFailure("cannot write the snapshot's device state to \(statePath)")
        }
        // The recorded working set goes into the page cache as well as L1: the guest's faults
        // then map cached pages instead of each asking the agent for 4 KiB through FUSE.
        let chunkSize = UInt64(memory.image.manifest.header.chunkSize)
        let warm = (memory.prefetchRecord?.chunks ?? memory.savedRecord ?? []).map { (offset: UInt64($0) * chunkSize, length: Int(chunkSize)) }
        return (memory, MicroVMSandbox.SnapshotFiles(ram: mountDirectory + "/" + memory.fileName, state: statePath), warm)
    }

    /// The SHA-256 of a file on the host (the kernel, the initramfs).
    static func fileDigest(_ path: String) throws -> [UInt8] {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw ValidationFailure("cannot read \(path)") }
        defer { try? handle.close() }
        var hash = SHA256()
        while let data = try handle.read(upToCount: 8 << 20), !data.isEmpty { hash.update(data: data) }
        return Array(hash.finalize())
    }

    /// The SHA-256 of a handler's launch: what the guest started before the snapshot.
    static func launchDigest(_ launch: HandlerLauncher.Launch) -> [UInt8] {
        var writer = ByteWriter()
        for list in [launch.arguments, launch.environment, [launch.workingDirectory, launch.user]] {
            writer.u32(UInt32(list.count))
            for item in list { writer.blob(Array(item.utf8)) }
        }
        return Array(SHA256.hash(data: writer.bytes))
    }
}
