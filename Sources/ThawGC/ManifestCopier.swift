import ThawMedes
import ThawSeal
import ThawStore

/// Re-seals one manifest into another root: every chunk decrypted with its key, checked,
/// sealed again under the new root's salt and stored there; then the manifest, its image
/// config, its access record and its memory snapshot (whose memory manifest is copied the
/// same way), written for the new root. A memory manifest patched against a base snapshot
/// takes its base along (copied first, so a base is never left behind while patches refer to
/// it) and its deltas re-sealed. Writing again what is already there changes nothing, so a copy
/// cut short is finished by running it again.
struct ManifestCopier {
    let store: any ChunkStore
    let keys: any TenantKeyProvider
    let concurrency: Int

    struct Copy {
        var manifest: Manifest
        var bytesResealed: UInt64
    }

    /// - Parameter resealed: chunks already re-sealed in this run, by their old names; shared
    ///   content is re-sealed once.
    func copy(manifestID: String, tenant: Tenant, from: RootID, to: RootID, resealed: inout [ChunkName: ChunkRef]) async throws -> Copy {
        let key = StoreLayout.manifest(id: manifestID, root: from, tenant: tenant)
        let original = try await Manifest.open(try await store.get(key), keys: keys, what: "manifest \(key)")
        var header = original.header
        header.root = to
        let salt = header.salt
        var bytes: UInt64 = 0
        // A memory manifest's patch table (and base), read once for the copy of its deltas.
        let memory = try await StoredMemory.open(original, store: store, keys: keys)
        let patches = memory.patches
        var baseCopy: Copy?
        if let baseID = patches?.baseManifestID {
            let copied = try await self.copy(manifestID: baseID, tenant: tenant, from: from, to: to, resealed: &resealed)
            bytes += copied.bytesResealed
            baseCopy = copied
        }
        let patchedNames = Set((patches.map { Array($0.deltas.keys) } ?? []).compactMap { original.chunks[$0]?.name })
        let pending = Array(Set(original.chunks.compactMap { $0 }.filter { resealed[$0.name] == nil && !patchedNames.contains($0.name) }
            .map { ChunkKeyed(ref: $0) }))
        try await withThrowingTaskGroup(of: (ChunkName, ChunkRef, Int).self) { group in
            var next = 0
            func start() {
                guard next < pending.count else { return }
                let ref = pending[next].ref
                next += 1
                group.addTask { [store] in
                    let ciphertext = try await store.getChunk(ref.name, root: from)
                    let plaintext = try ChunkSealer.open(ciphertext, name: ref.name, key: ref.key)
                    let sealed = ChunkSealer.seal(plaintext, salt: salt)
                    if try await !store.hasChunk(sealed.name, root: to) {
                        try await store.putChunk(sealed.name, sealed.ciphertext, root: to)
                    }
                    return (ref.name, ChunkRef(name: sealed.name, key: sealed.key), plaintext.count)
                }
            }
            for _ in 0..<concurrency { start() }
            while let (old, new, count) = try await group.next() {
                resealed[old] = new
                bytes += UInt64(count)
                start()
            }
        }
        var rebuilt: [ChunkName: ChunkRef] = [:]
        var newDeltas: [Int: ChunkRef] = [:]
        if let patches {
            (rebuilt, newDeltas) = try await copyDeltas(patches, of: memory, from: from, to: to)
            bytes += UInt64(rebuilt.count) * UInt64(original.header.chunkSize)
        }
        try await store.sync()
        let copy = Manifest(header: header, chunks: original.chunks.map { $0.map { rebuilt[$0.name] ?? resealed[$0.name]! } },
                            hotBlocks: original.hotBlocks)
        let newID = header.id
        if let patches {
            let table = PatchTable(memoryManifestID: newID, baseManifestID: baseCopy?.manifest.header.id, chunkCount: patches.chunkCount,
                                   deltas: newDeltas)
            try await store.put(StoreLayout.patchTable(id: newID, root: to, tenant: tenant), try await table.sealed(tenant: tenant, keys: keys))
        }
        // The config and the record first: the manifest is what makes the copy visible.
        let configKey = StoreLayout.imageConfig(id: manifestID, root: from, tenant: tenant)
        if let sealed = try await store.getIfPresent(configKey) {
            let config = try await ImageConfigRecord.open(sealed, for: original.header, keys: keys, what: "image config \(configKey)")
            try await store.put(StoreLayout.imageConfig(id: newID, root: to, tenant: tenant),
                                try await ImageConfigRecord(manifestID: newID, configJSON: config.configJSON).sealed(tenant: tenant, keys: keys))
        }
        let recordKey = StoreLayout.accessRecord(id: manifestID, root: from, tenant: tenant)
        if let sealed = try await store.getIfPresent(recordKey) {
            let record = try await AccessRecord.open(sealed, for: original.header, keys: keys, what: "access record \(recordKey)")
            try await store.put(StoreLayout.accessRecord(id: newID, root: to, tenant: tenant),
                                try await AccessRecord(manifestID: newID, chunkCount: record.chunkCount, chunks: record.chunks,
                                                       blocks: record.blocks).sealed(tenant: tenant, keys: keys))
        }
        let snapshotKey = StoreLayout.snapshot(id: manifestID, root: from, tenant: tenant)
        if let sealed = try await store.getIfPresent(snapshotKey) {
            var snapshot = try await SnapshotRecord.open(sealed, for: original.header, keys: keys, what: "snapshot record \(snapshotKey)")
            let memory = try await self.copy(manifestID: snapshot.memoryManifestID, tenant: tenant, from: from, to: to, resealed: &resealed)
            bytes += memory.bytesResealed
            snapshot.imageManifestID = newID
            snapshot.memoryManifestID = memory.manifest.header.id
            try await store.put(StoreLayout.snapshot(id: newID, root: to, tenant: tenant), try await snapshot.sealed(tenant: tenant, keys: keys))
        }
        try await store.put(StoreLayout.manifest(id: newID, root: to, tenant: tenant), try await copy.sealed(keys: keys))
        return Copy(manifest: copy, bytesResealed: bytes)
    }
}

extension ManifestCopier {
    /// Copies the deltas of a patched memory manifest into `to`: each patched chunk rebuilt
    /// from its delta and the base's pages (if it names any) in `from` and checked against its
    /// name, so that its name and key under the new salt are known; its delta (whose page
    /// numbers do not depend on the root) re-sealed and stored. The rebuilt chunk itself is not
    /// stored.
    ///
    /// - Returns: the new ref of each patched chunk by its old name, and the new deltas by chunk index.
    func copyDeltas(_ patches: PatchTable, of memory: StoredMemory, from: RootID, to: RootID) async throws
        -> (rebuilt: [ChunkName: ChunkRef], deltas: [Int: ChunkRef]) {
        let original = memory.manifest
        var newHeader = original.header
        newHeader.root = to
        let newSalt = newHeader.salt
        let entries = patches.deltas.sorted { $0.key < $1.key }
        var rebuilt: [ChunkName: ChunkRef] = [:]
        var deltas: [Int: ChunkRef] = [:]
        try await withThrowingTaskGroup(of: (Int, ChunkName, ChunkRef, ChunkRef).self) { group in
            var next = 0
            func start() {
                guard next < entries.count else { return }
                let (index, delta) = entries[next]
                next += 1
                group.addTask { [store] in
                    guard let ref = original.chunks[index] else {
                        throw PatchedChunk.RebuildError(description: "the patch table lists chunk \(index), a zero chunk of manifest \(original.header.id)")
                    }
                    let ciphertext = try await store.getChunk(delta.name, root: from)
                    let plaintext = try await memory.rebuild(delta: delta, ciphertext: ciphertext)
                    _ = try PatchedChunk.seal(plaintext, expecting: ref)
                    let newChunk = ChunkSealer.seal(plaintext, salt: newSalt)
                    let newDelta = ChunkSealer.seal(try ChunkSealer.open(ciphertext, name: delta.name, key: delta.key), salt: newSalt)
                    if try await !store.hasChunk(newDelta.name, root: to) {
                        try await store.putChunk(newDelta.name, newDelta.ciphertext, root: to)
                    }
                    return (index, ref.name, ChunkRef(name: newChunk.name, key: newChunk.key), ChunkRef(name: newDelta.name, key: newDelta.key))
                }
            }
            for _ in 0..<concurrency { start() }
            while let (index, old, chunk, delta) = try await group.next() {
                rebuilt[old] = chunk
                deltas[index] = delta
                start()
            }
        }
        return (rebuilt, deltas)
    }
}

/// A chunk reference hashed by its name, to re-seal each distinct chunk once.
private struct ChunkKeyed: Hashable {
    let ref: ChunkRef
    static func == (a: ChunkKeyed, b: ChunkKeyed) -> Bool { a.ref.name == b.ref.name }
    func hash(into hasher: inout Hasher) { hasher.combine(ref.name) }
}
