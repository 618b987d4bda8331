public import ThawSeal
public import ThawStore

/// What `thaw inspect` shows: everything in a manifest's public part, and how many of its chunks
/// other manifests in the same root also use. Needs no tenant key.
public struct Inspection: Sendable {
    public var id: String
    public var header: ManifestHeader
    public var chunks: Int
    public var storedChunks: Int
    public var distinctChunks: Int
    public var zeroChunks: Int
    /// Distinct chunks that at least one other manifest in the root references.
    public var sharedChunks: Int
    /// Other manifests in the root.
    public var otherManifests: Int

    public static func inspect(_ found: ManifestLookup.Found, in store: any ChunkStore) async throws -> Inspection {
        let mine = try Manifest.readPublic(found.bytes, what: "manifest \(found.key)")
        let names = Set(mine.names.compactMap { $0 })
        var others = Set<ChunkName>()
        var otherCount = 0
        for try await key in store.list(under: StoreLayout.manifests(root: mine.header.root)) where key != found.key {
            let other = try Manifest.readPublic(try await store.get(key), what: "manifest \(key)")
            otherCount += 1
            for case let name? in other.names where names.contains(name) { others.insert(name) }
        }
        let stored = mine.names.count(where: { $0 != nil })
        return Inspection(id: String(found.key.name), header: mine.header, chunks: mine.names.count, storedChunks: stored,
                          distinctChunks: names.count, zeroChunks: mine.names.count - stored,
                          sharedChunks: others.count, otherManifests: otherCount)
    }
}
