import Synchronization
public import ThawSeal
public import ThawStore

/// A snapshot's RAM read straight from the store, with no agent in between (`thaw pull`, the
/// base pages of `thaw snapshot --base`, garbage collection): a chunk stored whole is fetched
/// and opened; a chunk its `PatchTable` lists is rebuilt from its delta and, when the delta
/// names any, the base snapshot's pages, read the same way. Every chunk is checked against the
/// name the memory manifest gives it.
public final class StoredMemory: Sendable {
    public let manifest: Manifest
    /// The manifest's patch table; nil when every chunk is stored whole.
    public let patches: PatchTable?
    /// The base snapshot's RAM, when the patch table names a base.
    public let base: StoredMemory?
    let store: any ChunkStore
    /// Base chunks are kept once opened, the last `keptChunks` of them: neighbouring patched
    /// chunks mostly name pages of the same base chunks.
    static let keptChunks = 64
    private let kept = Mutex<(chunks: [Int: [UInt8]], order: [Int])>(([:], []))

    init(manifest: Manifest, patches: PatchTable?, base: StoredMemory?, store: any ChunkStore) {
        self.manifest = manifest
        self.patches = patches
        self.base = base
        self.store = store
    }

    /// Why a snapshot's RAM cannot be read.
    public struct ReadError: Error, Sendable, CustomStringConvertible {
        public let description: String
    }

    /// The RAM of memory manifest `manifest`, its patch table and base (in the same root) read.
    ///
    /// - Parameter asBase: the snapshot is read as another's base, so it must not have one.
    /// - Throws: `ReadError` when the base is itself patched against a base; the store's and
    ///   the seal's errors when a table or manifest is missing or does not open.
    public static func open(_ manifest: Manifest, store: any ChunkStore, keys: any TenantKeyProvider,
                            asBase: Bool = false) async throws -> StoredMemory {
        let header = manifest.header
        let tableKey = ManifestLocation(header).patchTable
        guard let sealed = try await store.getIfPresent(tableKey) else {
            return StoredMemory(manifest: manifest, patches: nil, base: nil, store: store)
        }
        let table = try await PatchTable.open(sealed, for: header, keys: keys, what: "patch table \(tableKey)")
        guard let baseID = table.baseManifestID else {
            return StoredMemory(manifest: manifest, patches: table, base: nil, store: store)
        }
        guard !asBase else {
            throw ReadError(description: "the base \(header.id) is itself patched against \(baseID): a base is patched against no base")
        }
        let baseKey = StoreLayout.manifest(id: baseID, root: header.root, tenant: header.tenant)
        let baseManifest = try await Manifest.open(try await store.get(baseKey), keys: keys, what: "base manifest \(baseKey)")
        let base = try await open(baseManifest, store: store, keys: keys, asBase: true)
        return StoredMemory(manifest: manifest, patches: table, base: base, store: store)
    }

    /// Chunk `index`'s plaintext (zeros for a zero chunk), checked against its name.
    public func chunk(_ index: Int) async throws -> [UInt8] {
        let header = manifest.header
        guard let ref = manifest.chunks[index] else { return [UInt8](repeating: 0, count: Int(header.chunkSize)) }
        guard let delta = patches?.deltas[index] else {
            return try ChunkSealer.open(try await store.getChunk(ref.name, root: header.root), name: ref.name, key: ref.key)
        }
        let plaintext = try await rebuild(delta: delta, ciphertext: try await store.getChunk(delta.name, root: header.root))
        _ = try PatchedChunk.seal(plaintext, expecting: ref)
        return plaintext
    }

    /// The plaintext of a delta of this RAM's patch table (its `ciphertext` fetched and checked
    /// by the caller), rebuilt with the base pages it names. Not yet checked against the chunk's
    /// name: `PatchedChunk.seal` does that, and gives the ciphertext.
    public func rebuild(delta: ChunkRef, ciphertext: [UInt8]) async throws -> [UInt8] {
        try await PatchedChunk.rebuild(deltaCiphertext: ciphertext, delta: delta) { [base, manifest] number, size in
            guard let base else {
                throw PatchedChunk.RebuildError(description: "its delta names base page \(number), but memory manifest \(manifest.header.id) has no base")
            }
            return try await base.page(number, size: size)
        }
    }

    /// Page `number` of this RAM, in pages of `size` bytes.
    public func page(_ number: UInt64, size: Int) async throws -> [UInt8] {
        let chunkSize = UInt64(manifest.header.chunkSize)
        let offset = number * UInt64(size)
        let index = Int(offset / chunkSize), within = Int(offset % chunkSize)
        guard index < manifest.chunks.count, within + size <= Int(chunkSize) else {
            throw PatchedChunk.RebuildError(description: "page \(number) is outside memory manifest \(manifest.header.id)")
        }
        if let chunk = kept.withLock({ $0.chunks[index] }) { return Array(chunk[within..<(within + size)]) }
        let chunk = try await self.chunk(index)
        kept.withLock { kept in
            if kept.chunks.updateValue(chunk, forKey: index) == nil { kept.order.append(index) }
            while kept.order.count > Self.keptChunks { kept.chunks.removeValue(forKey: kept.order.removeFirst()) }
        }
        return Array(chunk[within..<(within + size)])
    }
}
