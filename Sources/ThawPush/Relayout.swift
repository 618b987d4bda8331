import ThawBinary
import ThawExt4
import ThawFlatten
import ThawImage
public import ThawSeal
import ThawStore

/// What a relayout did.
public struct RelayoutReport: Sendable {
    /// The manifest laid out again, and the one it became.
    public var originalID: String
    public var manifestID: String
    public var header: ManifestHeader
    /// Blocks copied into the hot region (file and directory content a start read).
    public var hotBlocks: Int
    /// Chunks of the new manifest's record (what its starts prefetch), against the original's.
    public var recordChunks: Int
    public var originalRecordChunks: Int
    public var progress: PushProgress
    public var seconds: Double
}

/// Lays a pushed image out again so that a start reads few chunks: the file and directory
/// blocks a recorded start read are copied, in first-read order, into a hot region between
/// the layer regions and the metadata tail, and the files point at the copies (see
/// `HotPlacement`). The idea is that of eStargz's optimized layers and of startup-ordered
/// layouts, at block grain: hot parts of a large library move; the rest stays.
///
/// Nothing is read from the image's layers: they are laid out again from their layer records,
/// whose chunks the new manifest keeps, so images sharing a layer still share its chunks. The
/// copies come from the original image's chunks in the store. The new manifest gets a record
/// translated from the original's, so its first start already prefetches.
extension Pusher {
    public func relayout(_ original: Manifest, record: AccessRecord) async throws -> RelayoutReport {
        let started = ContinuousClock.now
        let header = original.header
        guard header.tenant == options.tenant, header.root == options.root else {
            throw PushError("manifest \(header.id) belongs to tenant \(header.tenant.name) in root \(header.root.value), not to the push's \(options.tenant.name) in \(options.root.value)")
        }
        guard record.manifestID == header.id else {
            throw PushError("the access record given belongs to manifest \(record.manifestID), not to \(header.id)")
        }
        guard !record.blocks.isEmpty else {
            throw PushError("the access record of manifest \(header.id) lists no blocks (an older agent saved it): start the image once more to record its blocks")
        }
        let chunkSize = UInt64(header.chunkSize)
        let flattener = Flattener(chunkSize: chunkSize)
        let layers = try await indexedLayers(of: header)
        let configDigest = try ThawImage.Digest(parsing: "sha256:" + Hex.encode(header.imageDigest))
        let originalHot = original.hotBlocks.map { ContentBlock(inode: $0.inode, logical: $0.logical) }
        let originalLayout = try flattener.layout(configDigest: configDigest, layers: layers.indexed, hot: originalHot)
        // The layout rebuilt from the layer records must be the manifest's, or blocks would be
        // taken for content they do not hold.
        let rebuiltHot = originalLayout.summary.hotBlocks == 0 ? nil : originalLayout.summary.hotStart * 4096
        guard originalLayout.summary.imageSize == header.imageSize, rebuiltHot == header.hot?.offset else {
            throw PushError("the layer records of manifest \(header.id) lay out another image (\(originalLayout.summary.imageSize) bytes, hot region at \(rebuiltHot.map(String.init) ?? "none")) than it holds (\(header.imageSize) bytes, hot region at \(header.hot.map { String($0.offset) } ?? "none"))")
        }

        // The content blocks the start read, in the order it read them.
        var hot: [ContentBlock] = []
        var seen = Set<ContentBlock>()
        for run in record.blocks {
            for block in UInt64(run.first)..<(UInt64(run.first) + UInt64(run.count)) {
                if case .content(let content) = originalLayout.role(of: block), seen.insert(content).inserted {
                    hot.append(content)
                }
            }
        }
        guard !hot.isEmpty else {
            throw PushError("the access record of manifest \(header.id) read no file or directory content")
        }

        // The file blocks to copy, from the original's chunks (regions are the same in every
        // layout of the image).
        let plain = try flattener.layout(configDigest: configDigest, layers: layers.indexed, hot: [])
        let regionsEnd = plain.summary.hotStart
        var needed = Set<Int>()
        for content in hot {
            if let block = plain.block(for: .content(content)), block < regionsEnd {
                needed.insert(Int(block * 4096 / chunkSize))
            }
        }
        let source = try await RegionBlocks.fetch(chunks: needed, of: original, store: store)

        let salt = header.salt
        let state = PushState()
        let channel = ChunkChannel(capacity: options.concurrency + 4)
        let temporaryDirectory = options.temporaryDirectory
        let indexed = layers.indexed
        let hotList = hot
        let flattening = Task.detached { () throws -> FlattenSummary in
            try await Self.onThread {
                defer { channel.finish() }
                let output = try SealingOutput(chunkSize: Int(chunkSize), channel: channel, temporaryDirectory: temporaryDirectory)
                return try Flattener(chunkSize: chunkSize).relayout(configDigest: configDigest, layers: indexed, hot: hotList, hotSource: source, into: output)
            }
        }
        var table: [Int: ChunkRef] = [:]
        do {
            table = try await sealAndUpload(channel, salt: salt, state: state)
        } catch {
            channel.close()
            _ = try? await flattening.value
            throw error
        }
        let summary = try await flattening.value
        for (region, record) in zip(summary.regions, layers.records) {
            let first = Int(region.offset / chunkSize)
            for (i, chunk) in record.chunks.enumerated() {
                if let chunk { table[first + i] = chunk }
            }
            state.reused(record.chunks.count)
        }

        let hotBlocks = hot.map { Manifest.HotBlock(inode: $0.inode, logical: $0.logical) }
        var newHeader = header
        newHeader.imageSize = summary.imageSize
        newHeader.layers = summary.regions.map { .init(diffID: $0.diffID.bytes, offset: $0.offset, length: $0.length) }
        newHeader.hot = .init(offset: summary.filesystem.hotStart * 4096, length: summary.filesystem.hotBlocks * 4096,
                              digest: Manifest.hotDigest(hotBlocks))
        let manifest = Manifest(header: newHeader, chunks: (0..<newHeader.chunkCount).map { table[$0] }, hotBlocks: hotBlocks)
        try await store.sync()

        // The config and the translated record before the manifest, which makes them visible.
        let tenant = header.tenant
        let configKey = StoreLayout.imageConfig(id: header.id, root: header.root, tenant: tenant)
        guard let sealedConfig = try await store.getIfPresent(configKey) else {
            throw PushError("manifest \(header.id) has no image config at \(configKey) in \(store.location)")
        }
        let config = try await ImageConfigRecord.open(sealedConfig, for: header, keys: keys, what: "image config \(configKey)")
        try await store.put(StoreLayout.imageConfig(id: newHeader.id, root: header.root, tenant: tenant),
                            try await ImageConfigRecord(manifestID: newHeader.id, configJSON: config.configJSON).sealed(tenant: tenant, keys: keys))
        let newLayout = try flattener.layout(configDigest: configDigest, layers: indexed, hot: hot)
        let translated = Self.translate(record, from: originalLayout, to: newLayout, manifest: manifest)
        try await store.put(StoreLayout.accessRecord(id: newHeader.id, root: header.root, tenant: tenant),
                            try await translated.sealed(tenant: tenant, keys: keys))
        try await store.put(StoreLayout.manifest(id: newHeader.id, root: header.root, tenant: tenant),
                            try await manifest.sealed(keys: keys))
        return RelayoutReport(originalID: header.id, manifestID: newHeader.id, header: newHeader, hotBlocks: hot.count,
                              recordChunks: translated.chunks.count, originalRecordChunks: record.chunks.count,
                              progress: state.snapshot(), seconds: (ContinuousClock.now - started).seconds)
    }

    /// The layer records of every layer of `header`, as the flattener replays them.
    private func indexedLayers(of header: ManifestHeader) async throws -> (indexed: [IndexedLayer], records: [LayerRecord]) {
        var indexed: [IndexedLayer] = []
        var records: [LayerRecord] = []
        for (position, layer) in header.layers.enumerated() {
            let diffID = try ThawImage.Digest(parsing: "sha256:" + Hex.encode(layer.diffID))
            let label = "layer \(position + 1) (\(diffID))"
            let key = LayerRecord.key(diffID: layer.diffID, chunkSize: header.chunkSize, salt: header.salt, tenant: header.tenant)
            guard let bytes = try await store.getIfPresent(key) else {
                throw PushError("the layer record of \(label) is missing from \(store.location) (\(key)): push the image again before laying it out")
            }
            let record = try await LayerRecord.open(bytes, expecting: layer.diffID, chunkSize: header.chunkSize, salt: header.salt,
                                                    tenant: header.tenant, keys: keys, what: "layer record \(key) in \(store.location)")
            guard record.index.regionLength == layer.length else {
                throw PushError("the layer record of \(label) has a region of \(record.index.regionLength) bytes; manifest \(header.id) says \(layer.length)")
            }
            indexed.append(IndexedLayer(diffID: diffID, label: label, index: record.index))
            records.append(record)
        }
        return (indexed, records)
    }

    /// The record in the new layout's terms: each block read goes where the new layout keeps
    /// the same thing (content, inode table, bitmap, tree block), in the same order.
    ///
    /// A file whose blocks moved may need an extent tree it did not have before (its extents no
    /// longer fit in the inode): the kernel reads that tree before the file's first content
    /// block, so the translated record lists the file's metadata blocks there. Without them a
    /// start of the new image waits for their chunk on demand, one origin round trip each.
    static func translate(_ record: AccessRecord, from old: Ext4Layout, to new: Ext4Layout, manifest: Manifest) -> AccessRecord {
        let chunkBlocks = UInt64(manifest.header.chunkSize) / 4096
        var chunks: [UInt32] = []
        var seenChunks = Set<UInt32>()
        var blocks: [AccessRecord.BlockRun] = []
        var seenBlocks = Set<UInt64>()
        var inodesRead = Set<UInt32>()
        func add(_ moved: UInt64) {
            guard seenBlocks.insert(moved).inserted else { return }
            if let last = blocks.last, UInt64(last.first) + UInt64(last.count) == moved {
                blocks[blocks.count - 1].count += 1
            } else {
                blocks.append(AccessRecord.BlockRun(first: UInt32(moved), count: 1))
            }
            let chunk = UInt32(moved / chunkBlocks)
            if manifest.chunks[Int(chunk)] != nil, seenChunks.insert(chunk).inserted { chunks.append(chunk) }
        }
        for run in record.blocks {
            for block in UInt64(run.first)..<(UInt64(run.first) + UInt64(run.count)) {
                let role = old.role(of: block)
                if case .content(let content) = role, inodesRead.insert(content.inode).inserted {
                    new.metadataBlocks(of: content.inode).forEach(add)
                }
                if let moved = new.block(for: role) { add(moved) }
            }
        }
        return AccessRecord(manifestID: manifest.header.id, chunkCount: manifest.header.chunkCount, chunks: chunks, blocks: blocks)
    }
}

/// Region blocks of a stored image, fetched whole chunk by whole chunk and kept in memory for
/// the flattener's thread: only the chunks holding hot blocks, a few dozen at most.
final class RegionBlocks: HotBlockSource, Sendable {
    private let chunkSize: Int
    private let plaintext: [Int: [UInt8]]

    private init(chunkSize: Int, plaintext: [Int: [UInt8]]) {
        self.chunkSize = chunkSize
        self.plaintext = plaintext
    }

    static func fetch(chunks: Set<Int>, of manifest: Manifest, store: any ChunkStore) async throws -> RegionBlocks {
        let chunkSize = Int(manifest.header.chunkSize)
        let root = manifest.header.root
        let fetched = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
            var result: [Int: [UInt8]] = [:]
            var running = 0
            for index in chunks.sorted() {
                guard let chunk = manifest.chunks[index] else {
                    result[index] = [UInt8](repeating: 0, count: chunkSize)
                    continue
                }
                if running >= 16, let (done, bytes) = try await group.next() {
                    result[done] = bytes
                    running -= 1
                }
                running += 1
                group.addTask {
                    let ciphertext = try await store.getChunk(chunk.name, root: root)
                    return (index, try ChunkSealer.open(ciphertext, name: chunk.name, key: chunk.key))
                }
            }
            for try await (done, bytes) in group { result[done] = bytes }
            return result
        }
        return RegionBlocks(chunkSize: chunkSize, plaintext: fetched)
    }

    func blocks(at block: UInt64, count: Int) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count * 4096)
        for offset in 0..<UInt64(count) {
            let byte = Int((block + offset) * 4096)
            guard let chunk = plaintext[byte / chunkSize] else {
                throw PushError("block \(block + offset) of the regions was not fetched for the hot region")
            }
            out += chunk[(byte % chunkSize)..<(byte % chunkSize + 4096)]
        }
        return out
    }
}
