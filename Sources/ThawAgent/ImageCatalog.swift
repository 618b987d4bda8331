import Foundation
public import Logging
public import ThawCache
public import ThawFUSE
public import ThawL2
public import ThawNBD
import ThawMetadata
import ThawPush
import ThawSeal
public import ThawServe
public import ThawStore
import ThawStore

/// The manifests an agent serves, opened on first request and shared by every client: an NBD
/// client naming a manifest id as its export, the control endpoint, or the preload list.
///
/// Opening a manifest reads it with the tenant's key and looks for its access record: with one,
/// its chunks are prefetched; without one, this start is recorded and the record saved when the
/// start is declared finished or goes idle.
///
/// With metadata, the catalog notes each served manifest as in use there (renewed while it is
/// served, ended when it is closed or the agent stops), so garbage collection keeps its root,
/// and reports which roots were read.
public actor ImageCatalog: NBDExportCatalog {
    let origin: AgentOrigin
    let cache: L1Cache
    let l2: L2Cache?
    let configuration: AgentConfiguration
    let metrics: ServeMetrics
    let fileSystem: FUSEFileSystem?
    /// How this agent names itself in the metadata's read marks and uses.
    let reader: String
    let logger: Logger
    /// When each served image's use was last noted in the metadata.
    private var useNoted: [String: ContinuousClock.Instant] = [:]
    private var images: [String: ServedImage] = [:]
    /// Reads of each image at the last report to the metadata.
    private var readsReported: [String: Int] = [:]
    /// Opens in progress, by the reference asked for, so concurrent requests open once.
    private var opening: [String: Task<ServedImage, any Error>] = [:]
    /// The base snapshots' RAM images that patched snapshots rebuild chunks from, by manifest id.
    private var bases: [String: LazyImage] = [:]

    public init(origin: AgentOrigin, cache: L1Cache, l2: L2Cache? = nil, configuration: AgentConfiguration,
                metrics: ServeMetrics, fileSystem: FUSEFileSystem? = nil,
                reader: String? = nil, logger: Logger = Logger(label: "thaw.agent")) {
        self.origin = origin
        self.cache = cache
        self.l2 = l2
        self.configuration = configuration
        self.metrics = metrics
        self.fileSystem = fileSystem
        self.reader = reader ?? "agent \(ProcessInfo.processInfo.hostName):\(getpid())"
        self.logger = logger
    }

    /// Every image served now, by id.
    public var served: [ServedImage] { images.values.sorted { $0.id < $1.id } }

    public func image(_ id: String) -> ServedImage? { images[id.lowercased()] }

    /// Serves `reference` (a manifest id or a unique prefix of 8 or more hex digits), opening it
    /// if it is not served yet. `privatelyMapped` serves a memory snapshot's RAM, whose FUSE file
    /// a VMM opens read-write to map it copy-on-write (its writes still fail).
    /// `withSnapshotRecord` asks for the image's memory snapshot record along with the manifest
    /// when it is opened now (`ServedImage.snapshotRecordAtOpen`). `location` says where the
    /// manifest is, when the caller knows (a snapshot's memory manifest is beside its image's):
    /// it is then read from there, without asking the metadata or listing the store, unless it
    /// is not there.
    ///
    /// - Throws: `AgentError(.cannotOpen)` naming the reference when there is no such manifest,
    ///   it is ambiguous, or it cannot be opened with the tenant's key.
    @discardableResult
    public func open(_ reference: String, at location: ManifestLocation? = nil, privatelyMapped: Bool = false,
                     withSnapshotRecord: Bool = false) async throws -> ServedImage {
        let reference = reference.lowercased()
        if let served = images[reference] { return served }
        if let pending = opening[reference] { return try await pending.value }
        let task = Task {
            try await self.load(reference, at: location, memory: privatelyMapped, snapshotRecord: withSnapshotRecord && !privatelyMapped)
        }
        opening[reference] = task
        defer { opening[reference] = nil }
        let loaded = try await task.value
        if let served = images[loaded.id] { return served }  // opened meanwhile under another reference
        images[loaded.id] = loaded
        // The prefetch first: a start's first reads wait for its chunks, not for the metadata.
        if configuration.prefetching {
            loaded.startPrefetch(concurrency: privatelyMapped ? configuration.memoryPrefetchConcurrency : configuration.prefetchConcurrency)
        }
        await noteUse(loaded)
        do {
            try fileSystem?.add(loaded.fileName, loaded, writableOpens: privatelyMapped)
        } catch {
            logger.error("cannot show the image in the mount directory", metadata: ["manifest": "\(loaded.id)", "error": "\(error)"])
        }
        logger.info("serving", metadata: [
            "manifest": "\(loaded.id)", "size": "\(loaded.size)",
            "prefetch": "\(loaded.prefetchRecord.map { "\($0.chunks.count) chunks" } ?? "none")",
            "recording": "\(loaded.image.recorder != nil)",
        ])
        return loaded
    }

    /// Reads and opens the manifest, with its access record if there is one, its image config
    /// (not for `memory` images) and, when `snapshotRecord` asks, its memory snapshot record.
    /// A `memory` image (a snapshot's RAM) records its zero chunks too (see `AccessRecorder`).
    private func load(_ reference: String, at location: ManifestLocation?, memory: Bool, snapshotRecord: Bool) async throws -> ServedImage {
        let store = origin.store
        let key: StoreKey
        do {
            if let location, location.id == reference {
                key = location.manifest
            } else {
                key = try await ManifestLookup.locate(reference, in: store, roots: origin.roots, metadata: origin.metadata)
            }
        } catch {
            throw AgentError(.cannotOpen, "cannot serve manifest \(reference): \(error)")
        }
        // The manifest, its access record, its image config and (when asked) its snapshot
        // record are asked for at once: each is an origin round trip that a start would
        // otherwise wait for one after the other.
        let found = StoreLayout.manifestLocation(of: key)
        let beside = found?.openedWith(imageConfig: !memory, snapshotRecord: snapshotRecord)
        async let recordBytes = Self.fetch(beside?.accessRecord, from: store)
        async let configBytes = Self.fetch(beside?.imageConfig, from: store)
        async let snapshotBytes = Self.fetch(beside?.snapshot, from: store)
        let manifest: Manifest
        do {
            let read = try await ManifestLookup.read(key, of: reference, in: store, roots: origin.roots)
            manifest = try await Manifest.open(read.bytes, keys: origin.keys, what: "manifest \(read.key)")
        } catch {
            throw AgentError(.cannotOpen, "cannot serve manifest \(reference): \(error)")
        }
        let header = manifest.header
        let location = ManifestLocation(header)
        let recordKey = location.accessRecord
        let configKey = location.imageConfig
        // They were asked for beside the key the manifest was found at; the header says where
        // they belong, and wins should the two ever differ.
        let foundWhereItBelongs = found != nil && key == location.manifest
        let record = await accessRecord(foundWhereItBelongs ? await recordBytes : await Self.fetch(recordKey, from: store),
                                        at: recordKey, of: header)
        let configJSON = memory ? nil
            : await imageConfig(foundWhereItBelongs ? await configBytes : await Self.fetch(configKey, from: store), at: configKey, of: header)
        // A record of chunks alone (format 1) is prefetched, and the start recorded again with
        // its blocks, which a relayout needs.
        let recordsAgain = record.map { $0.blocks.isEmpty && !memory } ?? true
        let recorder = configuration.recording && recordsAgain
            ? AccessRecorder(chunkCount: manifest.chunks.count, includingZeroChunks: memory,
                             imageSize: memory ? nil : manifest.header.imageSize)
            : nil
        var l2 = self.l2
        if let checked = l2?.chunkSize, Int(header.chunkSize) > checked {
            logger.warning("serving without L2: its nodes were checked for smaller chunks", metadata: [
                "manifest": "\(header.id)", "chunk_size": "\(header.chunkSize)", "l2_chunk_size": "\(checked)",
            ])
            l2 = nil
        }
        let patches = memory ? try await loadPatches(of: header, l2: l2) : nil
        let image = LazyImage(manifest: manifest, store: store, cache: cache, l2: l2,
                              configuration: memory ? memoryImageConfiguration : configuration.image,
                              metrics: metrics, recorder: recorder, patches: patches)
        var snapshotAtOpen = ServedImage.SnapshotRecordAtOpen.unknown
        if snapshotRecord && foundWhereItBelongs, case .success(let bytes) = await snapshotBytes {
            snapshotAtOpen = bytes.map { .present($0) } ?? .absent
        }
        return ServedImage(id: header.id, image: image, prefetchRecord: record, imageConfigJSON: configJSON,
                           snapshotRecordAtOpen: snapshotAtOpen)
    }

    /// The object at `key`: nil when there is none (or no key), the store's error when it
    /// cannot be read.
    private static func fetch(_ key: StoreKey?, from store: any ChunkStore) async -> Result<[UInt8]?, any Error> {
        guard let key else { return .success(nil) }
        do {
            return .success(try await store.getIfPresent(key))
        } catch {
            return .failure(error)
        }
    }

    /// The manifest's access record; nil when it has none or it cannot be read (a broken record
    /// costs a prefetch, never a start: the image is served without it and recorded anew).
    private func accessRecord(_ fetched: Result<[UInt8]?, any Error>, at key: StoreKey, of header: ManifestHeader) async -> AccessRecord? {
        do {
            guard let bytes = try fetched.get() else { return nil }
            return try await AccessRecord.open(bytes, for: header, keys: origin.keys, what: "access record \(key)")
        } catch {
            logger.warning("ignoring an unreadable access record", metadata: ["record": "\(key)", "error": "\(error)"])
            return nil
        }
    }

    /// The image config JSON stored beside the manifest, checked; nil when there is none or it
    /// cannot be read or opened (`Agent.imageConfiguration` asks the store again, for the error).
    private func imageConfig(_ fetched: Result<[UInt8]?, any Error>, at key: StoreKey, of header: ManifestHeader) async -> [UInt8]? {
        guard case .success(let found) = fetched, let bytes = found else { return nil }
        return try? await ImageConfigLookup.open(bytes, for: header, keys: origin.keys, what: "image config \(key) in \(origin.store.location)")
    }

    /// How a snapshot's RAM (and a base's) is served: as images are, with twice the memory
    /// prefetch's width of origin fetches, so demand faults find room beside the prefetch.
    private var memoryImageConfiguration: LazyImageConfiguration {
        var memory = configuration.image
        memory.maximumOriginFetches = max(memory.maximumOriginFetches, 2 * configuration.memoryPrefetchConcurrency)
        return memory
    }

    /// The patch table of a snapshot's RAM and, when its deltas name one, its base's image, or
    /// nil when it has none (every chunk is stored whole). Bases are opened once and shared by
    /// every snapshot patched against them; they are not served to clients.
    ///
    /// - Parameter base: the snapshot is itself a base, which must be patched against no base.
    private func loadPatches(of header: ManifestHeader, l2: L2Cache?, base isBase: Bool = false) async throws -> ChunkPatches? {
        let store = origin.store
        let key = ManifestLocation(header).patchTable
        let table: PatchTable
        do {
            table = try await PatchTable.open(try await store.get(key), for: header, keys: origin.keys, what: "patch table \(key)")
        } catch let error as StoreError where error.kind == .notFound {
            return nil
        } catch {
            throw AgentError(.cannotOpen, "cannot serve manifest \(header.id): \(error)")
        }
        guard let baseID = table.baseManifestID else { return ChunkPatches(table: table, base: nil) }
        guard !isBase else {
            throw AgentError(.cannotOpen, "base \(header.id) is itself patched against \(baseID): a base is patched against no base")
        }
        if let base = bases[baseID] { return ChunkPatches(table: table, base: base) }
        let baseKey = StoreLayout.manifest(id: baseID, root: header.root, tenant: header.tenant)
        let baseManifest: Manifest
        let basePatches: ChunkPatches?
        do {
            baseManifest = try await Manifest.open(try await store.get(baseKey), keys: origin.keys, what: "base manifest \(baseKey)")
            basePatches = try await loadPatches(of: baseManifest.header, l2: l2, base: true)
        } catch {
            throw AgentError(.cannotOpen, "cannot serve manifest \(header.id): its chunks are patched against base \(baseID), which cannot be opened: \(error)")
        }
        let base = LazyImage(manifest: baseManifest, store: store, cache: cache, l2: l2, configuration: memoryImageConfiguration,
                             metrics: metrics, patches: basePatches)
        bases[baseID] = base
        return ChunkPatches(table: table, base: base)
    }

    /// Ends the recording of `id`'s start and saves it next to the manifest.
    ///
    /// - Returns: the number of chunks the record lists; nil when nothing was being recorded
    ///   (the manifest had a record, or this start was already saved) or nothing was read.
    /// - Throws: `AgentError(.notServed)`, or the store's error when the record cannot be saved.
    @discardableResult
    public func finishRecording(_ id: String) async throws -> Int? {
        guard let served = images[id.lowercased()] else {
            throw AgentError(.notServed, "manifest \(id) is not served by this agent")
        }
        return try await save(served)
    }

    @discardableResult
    private func save(_ served: ServedImage) async throws -> Int? {
        guard let recorder = served.image.recorder, let (order, blocks) = recorder.finish(), !order.isEmpty else { return nil }
        let header = served.image.manifest.header
        let record = AccessRecord(manifestID: header.id, chunkCount: header.chunkCount, chunks: order, blocks: blocks)
        let key = ManifestLocation(header).accessRecord
        try await origin.store.put(key, try await record.sealed(tenant: header.tenant, keys: origin.keys))
        served.noteSaved(order)
        logger.info("saved access record", metadata: ["manifest": "\(header.id)", "chunks": "\(order.count)"])
        return order.count
    }

    /// Saves the recordings that have seen reads but none for the idle timeout.
    func finishIdleRecordings() async {
        for served in images.values {
            guard let recorder = served.image.recorder, recorder.isRecording, recorder.count > 0,
                  recorder.idleTime >= configuration.recordIdleTimeout else { continue }
            await saveOrLog(served)
        }
    }

    /// Notes in the metadata that this agent is using `served`'s manifest (a start), until a
    /// use lease from now; logged loudly when its root is no longer live. Without metadata, or
    /// when the metadata cannot be reached, the image is served all the same.
    private func noteUse(_ served: ServedImage) async {
        guard let metadata = origin.metadata else { return }
        let header = served.image.manifest.header
        do {
            let root = try await metadata.beginUse(manifest: header.id, root: header.root, by: reader,
                                                   until: Date() + Double(configuration.useLease.components.seconds))
            useNoted[served.id] = .now
            if let root, root.state == .expired || root.state == .deleted {
                logger.critical("serving a manifest whose root garbage collection has expired", metadata: [
                    "manifest": "\(header.id)", "root": "\(header.root)", "state": "\(root.state.rawValue)",
                ])
            }
        } catch {
            logger.error("cannot note the use of a manifest in the metadata", metadata: ["manifest": "\(header.id)", "error": "\(error)"])
        }
    }

    /// Renews the uses noted a third of the use lease ago or more (or never noted: the
    /// metadata was unreachable).
    func renewUses() async {
        let due = configuration.useLease / 3
        for served in images.values where useNoted[served.id].map({ ContinuousClock.now - $0 >= due }) ?? true {
            await noteUse(served)
        }
    }

    /// Ends this agent's use of `served`'s manifest in the metadata.
    private func endUse(_ served: ServedImage) async {
        guard let metadata = origin.metadata, useNoted.removeValue(forKey: served.id) != nil else { return }
        let header = served.image.manifest.header
        do {
            try await metadata.endUse(manifest: header.id, root: header.root, by: reader)
        } catch {
            logger.error("cannot end the use of a manifest in the metadata; it runs out by itself", metadata: [
                "manifest": "\(header.id)", "error": "\(error)",
            ])
        }
    }

    /// Tells the metadata which roots were read since the last report, once per root. A read
    /// of an expired root raises its alarm there (halting its deletion) and is logged loudly.
    func reportReads() async {
        guard let metadata = origin.metadata else { return }
        var roots = Set<RootID>()
        for served in images.values {
            let reads = served.image.statistics.reads
            if reads > readsReported[served.id, default: 0] {
                readsReported[served.id] = reads
                roots.insert(served.image.manifest.header.root)
            }
        }
        for root in roots.sorted() {
            do {
                let record = try await metadata.noteRead(root: root, at: Date(), by: reader)
                if let record, record.state == .expired || record.state == .deleted {
                    logger.critical("read a root garbage collection has expired: its deletion is halted until an operator clears the alarm",
                                    metadata: ["root": "\(root)", "state": "\(record.state.rawValue)", "alarm": "\(record.alarm ?? "")"])
                }
            } catch {
                logger.error("cannot report reads to the metadata", metadata: ["root": "\(root)", "error": "\(error)"])
            }
        }
    }

    /// Saves every recording that has seen reads, stops every prefetch and ends every use
    /// (agent shutdown). Reads are reported first, so the last ones count.
    func finishAll() async {
        for served in images.values {
            served.stopPrefetch()
            await saveOrLog(served)
        }
        await reportReads()
        for served in images.values { await endUse(served) }
    }

    /// `save` where no caller can be told: a record that cannot be saved costs the next start
    /// its prefetch, nothing more, so it is logged.
    private func saveOrLog(_ served: ServedImage) async {
        do {
            try await save(served)
        } catch {
            logger.error("cannot save access record", metadata: ["manifest": "\(served.id)", "error": "\(error)"])
        }
    }

    /// Stops serving `id` to new clients; connections that chose it keep reading it.
    public func close(_ id: String) async throws {
        guard let served = images.removeValue(forKey: id.lowercased()) else {
            throw AgentError(.notServed, "manifest \(id) is not served by this agent")
        }
        served.stopPrefetch()
        fileSystem?.remove(served.fileName)
        await endUse(served)
    }

    // MARK: NBDExportCatalog

    /// A manifest id (or unique prefix) opens that manifest; the empty name is the only image
    /// served, when there is exactly one.
    public func export(named name: String) async -> (any NBDExport)? {
        if name.isEmpty { return images.count == 1 ? images.values.first : nil }
        do {
            return try await open(name)
        } catch {
            logger.notice("NBD client asked for an export that cannot be served", metadata: ["export": "\(name)", "error": "\(error)"])
            return nil
        }
    }

    public func exportNames() async -> [String] { images.keys.sorted() }
}
