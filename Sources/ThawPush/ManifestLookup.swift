import ThawBinary
public import ThawMetadata
public import ThawSeal
public import ThawStore

/// Finds a manifest in a store by its id or a unique prefix of it (at least 8 hex digits).
public enum ManifestLookup {
    public struct Found: Sendable {
        public var key: StoreKey
        public var bytes: [UInt8]
    }

    public static func find(_ reference: String, in store: any ChunkStore, root: RootID) async throws -> Found {
        try await find(reference, in: store, roots: [root])
    }

    /// Looks in every root of `roots`: a manifest's id differs in each root (its copy-forward
    /// re-seals it under the new root's salt), so a reader need not know which root holds it.
    public static func find(_ reference: String, in store: any ChunkStore, roots: [RootID],
                            metadata: (any MetadataStore)? = nil) async throws -> Found {
        let key = try await locate(reference, in: store, roots: roots, metadata: metadata)
        return try await read(key, of: reference, in: store, roots: roots)
    }

    /// The manifest at `key`, which `locate` gave for `reference`. When there is no object there
    /// (the metadata named one whose root is on its way to deletion), the roots' listings say
    /// whether the manifest is anywhere else.
    public static func read(_ key: StoreKey, of reference: String, in store: any ChunkStore, roots: [RootID]) async throws -> Found {
        do {
            return Found(key: key, bytes: try await store.get(key))
        } catch let error as StoreError where error.kind == .notFound {
            let listed = try await locate(reference, in: store, roots: roots)
            return Found(key: listed, bytes: try await store.get(listed))
        }
    }

    /// The key of the manifest `reference` names, without reading it: a reader that also wants
    /// the objects kept beside it (its access record, its image config) can then ask for all of
    /// them at once.
    ///
    /// A full id that `metadata` records in one of `roots` is named from that record alone (the
    /// first of `roots` that has it): a store listing is an origin round trip a start would wait
    /// for, and on S3 a LIST request. A prefix, an id the metadata does not know (pushed without
    /// it), or metadata that cannot be read is looked for in the roots' listings.
    ///
    /// - Throws: `PushError` when `reference` is not a manifest id, names none or is ambiguous.
    public static func locate(_ reference: String, in store: any ChunkStore, roots: [RootID],
                              metadata: (any MetadataStore)? = nil) async throws -> StoreKey {
        let id = reference.lowercased()
        guard id.utf8.count >= 8, id.utf8.count <= 64, Hex.decode(id.utf8.count % 2 == 0 ? id : id + "0") != nil else {
            throw PushError("'\(reference)' is not a manifest id (8 to 64 hexadecimal digits)")
        }
        if let key = await recordedKey(id, roots: roots, metadata: metadata) { return key }
        var matches: [StoreKey] = []
        for root in roots {
            for try await key in store.list(under: StoreLayout.manifests(root: root)) where key.name.hasPrefix(id) {
                matches.append(key)
            }
        }
        guard let key = matches.first else {
            let searched = roots.count == 1 ? "root \(roots[0])" : "roots \(roots.map(\.value).joined(separator: ", "))"
            throw PushError("no manifest \(reference) in \(store.location) (\(searched))")
        }
        guard matches.count == 1 else {
            throw PushError("manifest id \(reference) is ambiguous in \(store.location): \(matches.map { String($0.name) }.joined(separator: ", "))")
        }
        return key
    }

    /// Where the metadata records full manifest id `reference` in the first of `roots` that has
    /// it; nil for a prefix, an id it does not record there, no metadata, or metadata that
    /// cannot be read. No store is asked.
    public static func recordedKey(_ reference: String, roots: [RootID], metadata: (any MetadataStore)?) async -> StoreKey? {
        let id = reference.lowercased()
        guard id.utf8.count == 64, Hex.decode(id) != nil, let metadata,
              let recorded = try? await metadata.manifests(withID: id) else { return nil }
        for root in roots {
            if let record = recorded.first(where: { $0.root == root }) {
                return StoreLayout.manifest(id: id, root: root, tenant: record.tenant)
            }
        }
        return nil
    }
}
