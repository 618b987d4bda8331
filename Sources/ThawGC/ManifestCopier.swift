import ThawSeal
import ThawStore

/// Re-seals one manifest into another root: every chunk decrypted with its key, checked,
/// sealed again under the new root's salt and stored there; then the manifest, its image
/// config, its access record and its memory snapshot (whose memory manifest is copied the
/// same way), written for the new root. Writing again what is already there changes nothing,
/// so a copy cut short is finished by running it again.
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
        let pending = Array(Set(original.chunks.compactMap { $0 }.filter { resealed[$0.name] == nil }.map { ChunkKeyed(ref: $0) }))
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
        try await store.sync()
        let copy = Manifest(header: header, chunks: original.chunks.map { $0.map { resealed[$0.name]! } })
        let newID = header.id
        // The config and the record first: the manifest is what makes the copy visible.
        let configKey = StoreLayout.imageConfig(id: manifestID, root: from, tenant: tenant)
        if let sealed = try? await store.get(configKey) {
            let config = try await ImageConfigRecord.open(sealed, for: original.header, keys: keys, what: "image config \(configKey)")
            try await store.put(StoreLayout.imageConfig(id: newID, root: to, tenant: tenant),
                                try await ImageConfigRecord(manifestID: newID, configJSON: config.configJSON).sealed(tenant: tenant, keys: keys))
        }
        let recordKey = StoreLayout.accessRecord(id: manifestID, root: from, tenant: tenant)
        if let sealed = try? await store.get(recordKey) {
            let record = try await AccessRecord.open(sealed, for: original.header, keys: keys, what: "access record \(recordKey)")
            try await store.put(StoreLayout.accessRecord(id: newID, root: to, tenant: tenant),
                                try await AccessRecord(manifestID: newID, chunkCount: record.chunkCount, chunks: record.chunks)
                                    .sealed(tenant: tenant, keys: keys))
        }
        let snapshotKey = StoreLayout.snapshot(id: manifestID, root: from, tenant: tenant)
        if let sealed = try? await store.get(snapshotKey) {
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

/// A chunk reference hashed by its name, to re-seal each distinct chunk once.
private struct ChunkKeyed: Hashable {
    let ref: ChunkRef
    static func == (a: ChunkKeyed, b: ChunkKeyed) -> Bool { a.ref.name == b.ref.name }
    func hash(into hasher: inout Hasher) { hasher.combine(ref.name) }
}
