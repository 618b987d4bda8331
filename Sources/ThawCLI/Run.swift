import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import ThawAgent
import ThawImage
import ThawMetadata
import ThawPush
import ThawSandbox
import ThawSandboxCore
import ThawSeal
import ThawServe
import ThawStore
import Synchronization
import UnixSignals

/// `thaw run IMAGE_OR_MANIFEST`: one cold start of a function, end to end.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start a function cold from its lazily loaded image, give it an event, print its response.",
        discussion: """
            FUNCTION is a function name (thaw push --name), a pushed manifest id, or an image (pushed first, \
            as by thaw push). The \
            handler is the image's Entrypoint and Cmd (a command after -- replaces Cmd), run with the \
            image's Env, WorkingDir and User in a process sandbox: new mount, PID, UTS, IPC and network \
            namespaces, the image loop-mounted read-only from the agent's FUSE file under a tmpfs overlay. \
            It reads the event on standard input; its standard output is the response, its standard error \
            the function's log (shown on standard error). A timing breakdown and the bytes fetched from \
            each tier follow on standard error. The first start of a manifest is recorded; later starts \
            prefetch what it read. SIGINT kills the sandbox and removes every mount.

            When the function has a memory snapshot (thaw snapshot) and no sandbox is chosen, or with \
            --from-snapshot, the microVM is restored from it instead of booted: its RAM is served lazily \
            by the agent as a FUSE file and the event goes to the waiting handler. --cold boots anyway.
            """
    )

    @Argument(help: "A function name, a manifest id, or an image (oci:PATH[:TAG], docker-archive:PATH, a layout directory, a .tar).")
    var function: String

    @Argument(parsing: .postTerminator, help: "A command that replaces the image's Cmd.")
    var command: [String] = []

    @Option(help: "The invocation event: JSON text, or @FILE to read it from FILE.")
    var event: String = "{}"

    @Option(help: "Seconds the handler may take before the sandbox is killed.")
    var timeout: Double = 30

    @Option(help: "Largest response, in bytes (K, M suffixes).")
    var responseLimit: String = "6M"

    @Option(help: "Size of the tmpfs that holds the function's writes, /tmp included.")
    var tmpSize: String = "64M"

    @Option(help: "The function's network: none (loopback only) or host.")
    var network: String = "none"

    @Option(help: "Read-ahead of the loop device in KiB. (default: 16, as every byte read ahead is fetched; for --image-file, a local file, the kernel's own)")
    var deviceReadAhead: Int?

    @Flag(inversion: .prefixedNo, help: "In the process sandbox, load the blocks a relaid image's record lists into the mounted image's caches while the handler starts.")
    var preload = true

    @Flag(inversion: .prefixedNo, help: "After a function name's recorded start, lay its image out again around what the start read (thaw relayout) and point the name at the result, once the response is out: its later starts fetch and preload only that.")
    var relayout = true

    @Option(help: "Run from this local copy of the image (thaw pull's output) instead of loading it lazily: the no-lazy-loading baseline. The argument must be its manifest.")
    var imageFile: String?

    @Option(help: "Cold starts this host runs at once; past it a start is refused at once.")
    var maxConcurrentStarts: Int = 8

    @Option(help: "The sandbox: process (namespaces and a loop mount) or microvm (qemu -M microvm). (default: a restored microvm when the function has a memory snapshot, else process)")
    var sandbox: String?

    @Flag(help: "Restore the function's microVM from its memory snapshot (thaw snapshot); fail when it has none.")
    var fromSnapshot = false

    @Flag(help: "Boot cold even when the function has a memory snapshot.")
    var cold = false

    @Flag(inversion: .prefixedNo, help: "Boot a snapshot's guest with nokaslr: most pages of similar functions' snapshots are then identical (stored once), at the cost of a guest kernel at a known address.")
    var nokaslr = true

    @Option(name: .customLong("kernel-arg"), help: "An extra argument for the microVM's guest kernel command line (repeatable); a snapshot keeps the ones it was taken with.")
    var kernelArgs: [String] = []

    @Flag(help: "Let a restored microVM's qemu advise huge pages on its RAM, to measure their effect: each fault then reads 4 MiB of the lazily served RAM file instead of a page.")
    var restoreHugePages = false

    @Option(help: "Chunk size, in KiB, of a snapshot's memory (4 to 512, a power of two).")
    var memoryChunkKib: Int = 64

    @Option(help: "thaw snapshot: store the memory as deltas against this base snapshot where pages are similar (Medes): a function name or image manifest id whose snapshot was taken without --base, in the same root.")
    var base: String?

    @Flag(inversion: .prefixedNo, help: "thaw snapshot: store memory chunks zstd-compressed (as deltas that name no base page) when that saves at least an eighth of a chunk. With --base, deltas are always compressed.")
    var memoryCompression = true

    @Option(help: "thaw snapshot --base: the largest patch of one 4 KiB page kept, in bytes; a page with no patch this small is stored as it is.")
    var patchLimit: Int = 2048

    /// Set by `thaw snapshot`: take the snapshot instead of invoking the function.
    @Flag(help: .hidden)
    var snapshotOnly = false

    @Option(help: "The microVM's root disk: nbd (qemu's NBD client on the agent's export) or file (the FUSE file).")
    var vmDisk: String = "nbd"

    @OptionGroup var microVM: MicroVMArguments

    @Option(help: "MiB of memory for the microVM.")
    var vmMemory: Int = 512

    @Option(help: "An environment entry NAME=value added to the image's (repeatable).")
    var env: [String] = []

    @Option(help: "Replaces the image's Entrypoint (and drops its Cmd); split on spaces.")
    var entrypoint: String?

    @Option(help: "Tenant whose key seals the manifest, when an image is pushed first.")
    var tenant: String = Tenant.default.name

    @Flag(help: "Print the breakdown as one JSON object instead of text.")
    var json = false

    @OptionGroup var agentArguments: AgentArguments
    @OptionGroup var storeArguments: StoreArguments

    func run() async throws {
        try agentArguments.bootstrapLogging(default: .warning)
        let eventBytes = try readEvent()
        let options = try sandboxOptions()
        guard maxConcurrentStarts >= 1 else { throw ValidationError("--max-concurrent-starts must be at least 1") }
        let slot: StartSlot
        do {
            slot = try StartSlots.acquire(directory: ThawRuntime.directory + "/starts", limit: maxConcurrentStarts)
        } catch let error as SandboxError {
            throw ValidationFailure(error.message)
        }
        defer { slot.release() }
        var configuration = try agentArguments.configuration()
        configuration.nbdAddress = nil
        if mayUseMicroVM && vmDisk == "nbd" && imageFile == nil {
            configuration.nbdAddress = .unix(path: ThawRuntime.directory + "/nbd-run-\(getpid()).sock")
        }
        configuration.controlAddress = nil
        if imageFile != nil {
            // The baseline reads a local copy: nothing to prefetch and nothing worth recording.
            configuration.prefetching = false
            configuration.recording = false
        }
        let mountDirectory = ThawRuntime.directory + "/mounts/run-\(getpid())"
        configuration.mountDirectory = mountDirectory

        // SIGINT or SIGTERM cancels the push while there is one, and the sandbox once it runs,
        // so that the agent still shuts down in order and removes its mount.
        let interrupt = Interrupt()
        let start = Task { try await self.start(configuration: configuration, options: options, event: eventBytes,
                                                 interrupt: interrupt) }
        interrupt.onFire { start.cancel() }
        let signals = Task {
            for await _ in await UnixSignalsSequence(trapping: .sigint, .sigterm) {
                interrupt.fire()
                return
            }
        }
        defer { signals.cancel() }
        let (outcome, breakdown, relayout) = try await start.value
        if snapshotOnly { return }  // takeSnapshot reported
        // The response was written as soon as the sandbox returned it (`start`). Laying out
        // again comes before the breakdown, which stays the last line (a JSON object with --json).
        if let relayout {
            slot.release()  // the start is over: laying out again takes no start's place
            let layingOut = Task { await relayout.layOut() }
            interrupt.onFire { layingOut.cancel() }
            await layingOut.value
        }
        FileHandle.standardError.write(Data((json ? breakdown.json() : breakdown.text()).utf8))
        if !outcome.leftovers.isEmpty {
            FileHandle.standardError.write(Data("warning: teardown incomplete: \(outcome.leftovers.joined(separator: "; "))\n".utf8))
        }
        if let failure = outcome.failure { throw ValidationFailure(failure.message) }
    }

    /// Writes the function's response to standard output, with a line end on a terminal.
    static func writeResponse(_ response: [UInt8]) {
        FileHandle.standardOutput.write(Data(response))
        if !response.isEmpty && response.last != 0x0a && isatty(1) != 0 {
            FileHandle.standardOutput.write(Data("\n".utf8))
        }
    }

    func readEvent() throws -> [UInt8] {
        guard event.hasPrefix("@") else { return Array(event.utf8) }
        let path = String(event.dropFirst())
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("--event \(event): cannot read \(path)")
        }
        return Array(data)
    }

    func sandboxOptions() throws -> ProcessSandbox.Options {
        guard sandbox == nil || sandbox == "process" || sandbox == "microvm" else {
            throw ValidationError("--sandbox must be process or microvm (got '\(sandbox ?? "")')")
        }
        guard !(fromSnapshot && cold), !((fromSnapshot || snapshotOnly) && sandbox == "process") else {
            throw ValidationError("--from-snapshot restores a microVM: it goes with neither --cold nor --sandbox process")
        }
        guard (4...512).contains(memoryChunkKib), memoryChunkKib & (memoryChunkKib - 1) == 0 else {
            throw ValidationError("--memory-chunk-kib must be a power of two from 4 to 512 (got \(memoryChunkKib))")
        }
        guard base == nil || snapshotOnly else {
            throw ValidationError("--base is for thaw snapshot: it chooses the snapshot a new snapshot's memory is stored against")
        }
        guard patchLimit >= 8, patchLimit <= 4096 else {
            throw ValidationError("--patch-limit must be from 8 to 4096 bytes (got \(patchLimit))")
        }
        guard vmDisk == "nbd" || vmDisk == "file" else {
            throw ValidationError("--vm-disk must be nbd or file (got '\(vmDisk)')")
        }
        guard vmMemory >= 64 else { throw ValidationError("--vm-memory must be at least 64 (MiB)") }
        guard let network = SandboxPlan.Network(rawValue: network) else {
            throw ValidationError("--network must be none or host (got '\(self.network)')")
        }
        guard timeout > 0 else { throw ValidationError("--timeout must be more than 0 seconds") }
        var options = ProcessSandbox.Options(initCommand: [try ThawRuntime.executable, SandboxInitCommand.name])
        options.network = network
        guard (deviceReadAhead ?? 0) >= 0 else { throw ValidationError("--device-read-ahead must be at least 0") }
        options.deviceReadAheadKiB = deviceReadAhead ?? (imageFile == nil ? 16 : nil)
        options.timeout = .milliseconds(Int64(timeout * 1000))
        options.responseLimit = try ByteCount.parse(responseLimit, option: "--response-limit")
        options.tmpSize = try ByteCount.parse(tmpSize, option: "--tmp-size")
        guard options.tmpSize >= 1 << 20 else { throw ValidationError("--tmp-size must be at least 1M") }
        options.stateDirectory = ThawRuntime.directory + "/sandboxes"
        return options
    }

    /// Whether this start may run the process sandbox: asked for, or left open (a function with a
    /// memory snapshot is restored in a microVM instead).
    var mayUseProcessSandbox: Bool { sandbox != "microvm" && !fromSnapshot && !snapshotOnly }

    /// Whether this start may run a microVM: asked for, or left open for a snapshot to restore.
    var mayUseMicroVM: Bool { sandbox != "process" && imageFile == nil || sandbox == "microvm" }

    /// The microVM's settings: its kernel and initramfs (built on first use), accelerator and limits.
    func microVMOptions(_ process: ProcessSandbox.Options) throws -> MicroVMSandbox.Options {
        var options = try microVM.options(tmpSize: process.tmpSize)
        options.memoryMiB = vmMemory
        options.timeout = process.timeout
        options.responseLimit = process.responseLimit
        options.stateDirectory = ThawRuntime.directory + "/vms"
        options.kernelArguments += kernelArgs
        return options
    }

    /// Pushes when given an image, serves the manifest from an agent in this process, runs the
    /// sandbox, and shuts the agent down (saving the recording) whatever happened. Also returns,
    /// for a function name whose start recorded, the relayout to do once the start is over.
    func start(configuration: AgentConfiguration, options: ProcessSandbox.Options,
               event: [UInt8], interrupt: Interrupt) async throws -> (SandboxOutcome, StartBreakdown, PendingRelayout?) {
        var breakdown = StartBreakdown(began: MonotonicTime.now())
        let manifestReference: String
        var storeArguments = self.storeArguments
        let named = try await functionRecord()
        if let named {
            // The name's manifest, in the root that holds it.
            manifestReference = named.manifestID
            storeArguments.root = named.root.value
        } else if ManifestReference.looksLikeManifest(function) {
            manifestReference = function
        } else {
            do {
                let report = try await PushCommand.run(image: function, store: storeArguments, tenant: tenant,
                                                       platform: "linux/amd64", chunkSize: 512 * 1024, concurrency: 8)
                manifestReference = report.manifestID
                storeArguments.root = report.header.root.value
                breakdown.pushed = MonotonicTime.now()
            } catch {
                throw ValidationFailure("cannot push \(function): \(CommandErrors.describe(error))")
            }
        }
        let agent: Agent
        let early: (store: EarlyReadStore, location: ManifestLocation)?
        do {
            var origin = try await agentArguments.origin(storeArguments)
            early = await earlyReadingStore(for: manifestReference, origin: origin)
            origin.store = early?.store ?? origin.store
            agent = Agent(configuration: configuration, origin: origin, logger: Logger(label: "thaw.run"))
        } catch {
            throw ValidationFailure(CommandErrors.describe(error))
        }
        defer { early?.store.cancelUnclaimed() }
        try FileManager.default.createDirectory(atPath: configuration.mountDirectory!, withIntermediateDirectories: true)
        defer { rmdir(configuration.mountDirectory!) }
        let group = ServiceGroup(configuration: .init(services: [agent], logger: Logger(label: "thaw.run")))
        return try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            defer { tasks.cancelAll() }
            do {
                let result = try await runServed(agent: agent, reference: manifestReference, at: early?.location, options: options, event: event,
                                                 interrupt: interrupt, breakdown: &breakdown)
                // The response first: the caller has its answer while the agent shuts down.
                if !snapshotOnly { Self.writeResponse(result.0.response) }
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                let relayout = self.relayout && !snapshotOnly && result.0.failure == nil && result.1.mayBeLaidOutAgain
                return (result.0, result.1, relayout ? named.map { PendingRelayout(named: $0, storeArguments: storeArguments) } : nil)
            } catch {
                await group.triggerGracefulShutdown()
                try? await tasks.waitForAll()
                throw error
            }
        }
    }

    /// A function name whose image is laid out as pushed and has a record of what a start read:
    /// once a start of it has succeeded, the image is laid out again around that record and the
    /// name moved to the result (`thaw relayout`), so that its next starts prefetch and preload
    /// only the hot region.
    struct PendingRelayout {
        var named: FunctionRecord
        /// The store, with the root the name's manifest is in.
        var storeArguments: StoreArguments

        /// Lays the image out again (`Relayout.layOutAfterStart`); says what it did, or why it
        /// did not, on standard error. A start that cannot be laid out again still succeeded.
        func layOut() async {
            let line: String
            do {
                switch try await Relayout.layOutAfterStart(named, storeArguments: storeArguments) {
                case .laidOut(let report):
                    line = "laid out again: \(named.name) → \(report.manifestID) in \(String(format: "%.2f", report.seconds)) s; "
                        + "its starts prefetch \(report.recordChunks) chunks, against \(report.originalRecordChunks)\n"
                case .hasSnapshot:
                    line = "not laid out again: \(named.name)'s manifest \(named.manifestID) has a memory snapshot (thaw relayout lays it out, leaving the snapshot behind)\n"
                }
            } catch {
                line = "warning: cannot lay \(named.name) out again (thaw relayout): \(CommandErrors.describe(error))\n"
            }
            FileHandle.standardError.write(Data(line.utf8))
        }
    }

    /// `origin`'s store, reading the manifest and the objects the agent opens with it (its access
    /// record, its image config and, when it may be restored, its memory snapshot record) from
    /// now on, when the metadata says where they are: the origin's round trip for them then
    /// passes while the agent mounts FUSE and opens its caches, instead of after. Also where the
    /// manifest is, so that the agent opens it without asking the metadata again. Nil when the
    /// metadata does not know `reference` (a prefix, or an id pushed without it).
    func earlyReadingStore(for reference: String, origin: AgentOrigin) async -> (store: EarlyReadStore, location: ManifestLocation)? {
        guard let key = await ManifestLookup.recordedKey(reference, roots: origin.roots, metadata: origin.metadata),
              let found = StoreLayout.manifestLocation(of: key) else { return nil }
        let store = EarlyReadStore(origin.store)
        let beside = found.openedWith(imageConfig: true, snapshotRecord: mayUseMicroVM && !cold)
        store.readEarly([key, beside.accessRecord] + [beside.imageConfig, beside.snapshot].compactMap { $0 })
        return (store, found)
    }

    /// The function `function` names in the metadata, when it is a name there.
    ///
    /// - Throws: when the metadata cannot be read and `function` could only be a name, or when
    ///   it is a name-like word that is neither a name there, a manifest id nor a path.
    func functionRecord() async throws -> FunctionRecord? {
        guard let name = try? FunctionName(function) else { return nil }
        let couldBeSomethingElse = ManifestReference.looksLikeManifest(function) || FileManager.default.fileExists(atPath: function)
        let found: FunctionRecord?
        do {
            found = try await storeArguments.withMetadata(create: false) { try await $0?.function(named: name) }
        } catch {
            if couldBeSomethingElse { return nil }
            throw ValidationFailure("cannot look up function \(name): \(CommandErrors.describe(error))")
        }
        if found == nil, !couldBeSomethingElse {
            throw ValidationFailure("no function named \(name) in \(try storeArguments.metadataLocation), and no image or manifest \(function)")
        }
        return found
    }

    func runServed(agent: Agent, reference: String, at location: ManifestLocation?, options: ProcessSandbox.Options, event: [UInt8],
                   interrupt: Interrupt, breakdown: inout StartBreakdown) async throws -> (SandboxOutcome, StartBreakdown) {
        guard let endpoints = await agent.waitUntilRunning(), let directory = endpoints.mountDirectory else {
            throw ValidationFailure("the image server did not start")
        }
        breakdown.agentReady = MonotonicTime.now()
        // The process sandbox's init starts now, while the manifest comes (see `LaunchedSandbox`);
        // not earlier, as its mount namespace is a copy of this one and must hold the agent's
        // FUSE mount. A launch that fails here is tried again when the sandbox runs, which
        // reports why.
        var launched: LaunchedSandbox?
        if mayUseProcessSandbox {
            do {
                launched = try ProcessSandbox(options: options).launch()
            } catch {
                Logger(label: "thaw.run").warning("cannot launch the sandbox ahead; trying again when it runs", metadata: ["error": "\(error)"])
            }
        }
        do {
            let result = try await runServed(agent: agent, endpoints: endpoints, directory: directory, reference: reference, at: location,
                                             options: options, launched: launched, event: event, interrupt: interrupt,
                                             breakdown: &breakdown)
            await launched?.abandon()
            return result
        } catch {
            await launched?.abandon()
            throw error
        }
    }

    /// `runServed` once the agent runs, with the process sandbox launched ahead, if any: it is
    /// used or left for the caller to abandon.
    func runServed(agent: Agent, endpoints: Agent.Endpoints, directory: String, reference: String, at location: ManifestLocation?,
                   options: ProcessSandbox.Options,
                   launched: LaunchedSandbox?, event: [UInt8], interrupt: Interrupt,
                   breakdown: inout StartBreakdown) async throws -> (SandboxOutcome, StartBreakdown) {
        let served: ServedImage
        let config: ImageConfiguration
        do {
            served = try await agent.open(reference, at: location, withSnapshotRecord: mayUseMicroVM && !cold)
            config = try await agent.imageConfiguration(of: served)
        } catch {
            throw ValidationFailure(CommandErrors.describe(error))
        }
        breakdown.manifestFetched = MonotonicTime.now()
        let file = imageFile ?? (directory + "/" + served.fileName)
        guard FileManager.default.fileExists(atPath: file) else {
            throw ValidationFailure(imageFile == nil ? "the image file \(file) is not in the FUSE mount" : "--image-file \(file) does not exist")
        }
        breakdown.deviceReady = MonotonicTime.now()
        let spec = try FunctionSpec(execution: config.config, image: reference, command: command,
                                    entrypoint: entrypoint.map { $0.split(separator: " ").map(String.init) },
                                    environment: env)
        let show: @Sendable ([UInt8]) -> Void = { piece in FileHandle.standardError.write(Data(piece)) }
        let run: Task<SandboxOutcome, any Error>
        let root: MicroVMSandbox.RootDisk
        if imageFile == nil, vmDisk == "nbd", case .unix(let socket)? = endpoints.nbd {
            root = .nbd("nbd+unix:///\(served.id)?socket=\(socket)")
        } else {
            root = .file(file)
        }
        if snapshotOnly {
            return try await takeSnapshot(agent: agent, served: served, root: root, function: spec, options: options,
                                          interrupt: interrupt, breakdown: &breakdown)
        }
        // This agent opened the image just now, asking for its snapshot record with it.
        if mayUseMicroVM, !cold, let snapshot = try await FunctionSnapshots(agent: agent).find(served: served, asOpened: true) {
            await launched?.abandon()
            return try await restoreSnapshot(snapshot, agent: agent, served: served, root: root, directory: directory, function: spec,
                                             options: options, event: event, interrupt: interrupt, breakdown: &breakdown)
        }
        if fromSnapshot {
            throw ValidationFailure("manifest \(served.id) has no memory snapshot: take one with thaw snapshot \(function)")
        }
        if sandbox == "microvm" {
            let vm = try microVMOptions(options)
            run = Task { try await MicroVMSandbox(options: vm).run(root: root, function: spec, event: event, log: show) }
        } else {
            let preload = imageFile == nil && self.preload ? Self.preload(for: served) : nil
            if let launched {
                run = Task { try await launched.run(imageFile: file, function: spec, event: event, preload: preload, log: show) }
            } else {
                run = Task {
                    try await ProcessSandbox(options: options).run(imageFile: file, function: spec, event: event, preload: preload, log: show)
                }
            }
        }
        let warmer = imageFile == nil && sandbox != "microvm" ? Self.warmPageCache(of: file, served: served) : nil
        interrupt.onFire { run.cancel() }
        let outcome: SandboxOutcome
        do {
            outcome = try await run.value
            await warmer?.stopAndWait()
        } catch {
            await warmer?.stopAndWait()
            throw error
        }
        breakdown.pageCacheWarmed = warmer.map { ($0.progress.ranges, $0.progress.bytes) }
        breakdown.sandboxPreload = outcome.preloaded
        // The device is ready when the sandbox has attached it (the loop device, or the
        // microVM's disk); until then only the image file was.
        if let attached = outcome.deviceAttached { breakdown.deviceReady = attached }
        breakdown.rootMounted = outcome.rootMounted
        breakdown.handlerStarted = outcome.handlerStarted
        breakdown.finished = outcome.finished
        breakdown.manifestID = served.id
        breakdown.imageSize = served.size
        breakdown.chunkSize = UInt64(served.image.manifest.header.chunkSize)
        breakdown.reads = served.image.statistics
        breakdown.prefetchChunks = served.prefetchRecord?.chunks.count
        if outcome.failure == nil {
            breakdown.recordedChunks = try? await agent.finishRecording(served.id)
        }
        // Laid out as pushed, and a record of the blocks read (saved now, or by an earlier
        // start, a failed one included: the agent saves recordings when it stops).
        let recordedBlocks = breakdown.recordedChunks != nil || !(served.prefetchRecord?.blocks.isEmpty ?? true)
        breakdown.mayBeLaidOutAgain = imageFile == nil && served.image.manifest.header.hot == nil && recordedBlocks
        return (outcome, breakdown)
    }
}

extension Run {
    /// What the process sandbox's init loads into the mounted image's caches as the handler
    /// starts: the recorded blocks, in the order read, content through its files. Only an image
    /// with a hot region (a relaid one) says which of its blocks are file content; for any
    /// other, or without a record of blocks, nil.
    static func preload(for served: ServedImage) -> [PreloadRun]? {
        let manifest = served.image.manifest
        guard let hot = manifest.header.hot, let record = served.prefetchRecord, !record.blocks.isEmpty else { return nil }
        return ImagePreload.runs(recorded: record.blocks.map { (first: UInt64($0.first), count: UInt64($0.count)) },
                                 hotStart: hot.offset / 4096, hotBlocks: manifest.hotBlocks.map { (inode: $0.inode, logical: $0.logical) })
    }

    /// Loads the blocks the image's access record lists into the page cache of its FUSE file,
    /// in the order the recorded start read them, while the sandbox mounts it; nil when there is
    /// no record of blocks.
    ///
    /// Why: the loop device reads its file through that page cache, and the FUSE mount turns
    /// readahead off (every page read ahead could cost a chunk), so each read the handler makes
    /// that misses the cache is one 4 KiB round trip through the kernel and Thaw's FUSE thread,
    /// some 3,000 of them in a start. The warmer asks for the recorded ranges whole, many at once;
    /// the prefetch is already fetching their chunks, and the handler's reads then find their
    /// pages cached. Both opens are of the same file, so the kernel keeps what the other loaded.
    static func warmPageCache(of file: String, served: ServedImage) -> PageCacheWarmer? {
        guard let ranges = served.prefetchRecord?.blockRanges, !ranges.isEmpty else { return nil }
        return PageCacheWarmer.start(path: file, ranges: ranges)
    }
}

/// What an interrupt stops: the action registered last, run once; an interrupt that came
/// before the action was registered runs it at once.
final class Interrupt: Sendable {
    private let state = Mutex<(fired: Bool, action: (@Sendable () -> Void)?)>((false, nil))

    func onFire(_ action: @escaping @Sendable () -> Void) {
        let fired = state.withLock { state in
            state.action = action
            return state.fired
        }
        if fired { action() }
    }

    func fire() {
        let action = state.withLock { state in
            state.fired = true
            return state.action
        }
        action?()
    }
}

/// Telling a manifest id from an image reference on the command line.
enum ManifestReference {
    /// Hex of 8 to 64 digits that is not also a file or directory.
    static func looksLikeManifest(_ text: String) -> Bool {
        (8...64).contains(text.count) && text.allSatisfy(\.isHexDigit) && !FileManager.default.fileExists(atPath: text)
    }
}

/// Where a running `thaw` keeps its mount points and sandbox directories, and which binary it is.
enum ThawRuntime {
    static var directory: String {
        if let dir = ProcessInfo.processInfo.environment["THAW_RUNTIME_DIR"], !dir.isEmpty { return dir }
        return getuid() == 0 ? "/run/thaw" : NSTemporaryDirectory() + "thaw-\(getuid())"
    }

    /// This executable, for the sandbox to start its init from.
    static var executable: String {
        get throws {
            do {
                return try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
            } catch {
                throw ValidationFailure("cannot find the thaw executable through /proc/self/exe: \(error)")
            }
        }
    }
}

/// `thaw sandbox-init WORKDIR`: the first process inside a sandbox (see `SandboxInit`), which
/// reads its plan from descriptor 4. Not for users.
struct SandboxInitCommand: ParsableCommand {
    static let name = "sandbox-init"
    static let configuration = CommandConfiguration(commandName: name, abstract: "The init of a process sandbox.",
                                                     shouldDisplay: false)

    /// The sandbox's work directory, which its plan must name too: it shows in `ps`.
    @Argument var workDirectory: String

    func run() throws {
        let received: SandboxPlan?
        do {
            received = try SandboxPlan.receive()
        } catch {
            throw ExitCode(SandboxInit.fail("thaw sandbox-init: \(error)"))
        }
        // No plan: the host abandoned this sandbox before it knew what to run.
        guard let plan = received else { throw ExitCode(SandboxInit.setupFailedStatus) }
        guard plan.workDirectory == workDirectory else {
            throw ExitCode(SandboxInit.fail("thaw sandbox-init: the plan is for \(plan.workDirectory), not \(workDirectory)"))
        }
        throw ExitCode(SandboxInit.run(plan))
    }
}
