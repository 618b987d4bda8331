import Foundation
public import ThawImage
public import ThawSeal
public import ThawStore

/// Reads how to run a pushed image (Entrypoint, Cmd, Env, WorkingDir, User) from the store: the
/// image config sealed next to its manifest (`StoreLayout.imageConfig`), so that a worker needs
/// neither the registry nor the layout the image was pushed from.
public enum ImageConfigLookup {
    /// The raw config JSON of the manifest `header` describes, checked against its image digest.
    ///
    /// - Throws: `PushError` when the store holds no config for the manifest (it was pushed by a
    ///   Thaw that did not store configs, or the object was deleted); `SealError` when the record
    ///   belongs to another manifest, does not hash to the image digest, or does not open;
    ///   `StoreError` for any other store failure.
    public static func loadBytes(for header: ManifestHeader, store: any ChunkStore,
                                 keys: any TenantKeyProvider) async throws -> [UInt8] {
        let key = ManifestLocation(header).imageConfig
        let bytes: [UInt8]
        do {
            bytes = try await store.get(key)
        } catch let error as StoreError where error.kind == .notFound {
            throw PushError("manifest \(header.id) has no image config in \(store.location) (\(key) is missing): "
                            + "push the image again to store it")
        }
        return try await open(bytes, for: header, keys: keys, what: "image config \(key) in \(store.location)")
    }

    /// The config JSON in `bytes`, the sealed config record read from beside the manifest
    /// `header` describes (`what` names it in errors).
    ///
    /// - Throws: `SealError` as `loadBytes` does.
    public static func open(_ bytes: [UInt8], for header: ManifestHeader, keys: any TenantKeyProvider,
                            what: String) async throws -> [UInt8] {
        try await ImageConfigRecord.open(bytes, for: header, keys: keys, what: what).configJSON
    }

    /// The decoded config of the manifest `header` describes.
    ///
    /// - Throws: as `loadBytes(for:store:keys:)`, and `PushError` when the JSON does not decode as
    ///   an image config.
    public static func load(for header: ManifestHeader, store: any ChunkStore,
                            keys: any TenantKeyProvider) async throws -> ImageConfiguration {
        try decode(try await loadBytes(for: header, store: store, keys: keys), of: header, from: store.location)
    }

    /// The config JSON `loadBytes` returned for the manifest `header` describes, decoded.
    ///
    /// - Throws: `PushError` naming the manifest and `location` when it does not decode.
    public static func decode(_ bytes: [UInt8], of header: ManifestHeader, from location: String) throws -> ImageConfiguration {
        do {
            return try JSONDecoder().decode(ImageConfiguration.self, from: Data(bytes))
        } catch {
            throw PushError("the image config of manifest \(header.id) in \(location) does not decode: \(error)")
        }
    }
}
