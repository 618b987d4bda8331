public import ThawSeal

/// A path inside a store: `/`-separated components of `A-Z a-z 0-9 . _ -`, none empty, `.`
/// or `..`. The same key names the same object in a directory store (a relative file path) and
/// in an S3 store (an object key under the store's prefix).
public struct StoreKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let path: String

    public init(_ path: String) throws {
        let components = path.split(separator: "/", omittingEmptySubsequences: false)
        let valid = !path.isEmpty && components.allSatisfy { component in
            !component.isEmpty && component != "." && component != ".."
                && component.utf8.allSatisfy { c in
                    (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c == 0x2e || c == 0x5f || c == 0x2d
                }
        }
        guard valid else { throw StoreError(.invalidLocation, "'\(path)' is not a valid store key") }
        self.path = path
    }

    init(unchecked path: String) { self.path = path }

    public var description: String { path }
    public static func < (a: StoreKey, b: StoreKey) -> Bool { a.path < b.path }
    /// The last component.
    public var name: Substring { path.split(separator: "/").last ?? Substring(path) }
}

/// The origin store (L3): holds sealed chunks by name, and the manifests and layer records that
/// refer to them, under garbage-collection roots (see `StoreLayout`).
///
/// Implementations: `DirectoryStore` (the embedded default) and `S3Store`. Writes of one key are
/// atomic: a reader sees the whole old object, the whole new one, or nothing.
public protocol ChunkStore: Sendable {
    /// The store's location, for messages: a directory path or `s3://bucket/prefix`.
    var location: String { get }

    /// Writes `bytes` under `key`, replacing what was there.
    func put(_ key: StoreKey, _ bytes: [UInt8]) async throws
    /// The bytes under `key`; `StoreError.notFound` if there are none.
    func get(_ key: StoreKey) async throws -> [UInt8]
    func exists(_ key: StoreKey) async throws -> Bool
    /// Removes `key`; removing a missing key succeeds.
    func delete(_ key: StoreKey) async throws
    /// Every key that starts with `prefix` (a whole component path, without trailing `/`), in no
    /// particular order.
    func list(under prefix: String) -> AsyncThrowingStream<StoreKey, any Error>
    /// Writes a chunk. Stores that sign payloads can use the name, which is the ciphertext's SHA-256.
    /// A chunk present under its name is whole, but it may become durable only at the next `sync`.
    func putChunk(_ name: ChunkName, _ ciphertext: [UInt8], root: RootID) async throws
    /// Makes every chunk written so far durable. Called before a manifest that refers to them.
    func sync() async throws
    /// Removes every key under `prefix` (a whole component path), and nothing else; returns
    /// how many objects went. Removing a prefix with nothing under it succeeds.
    @discardableResult
    func deleteAll(under prefix: String) async throws -> Int
}

extension ChunkStore {
    /// A chunk's ciphertext, checked against its name before it is returned.
    ///
    /// - Throws: `StoreError.corrupt` naming the chunk and the store when the bytes do not match,
    ///   `.notFound` when the chunk is missing.
    public func getChunk(_ name: ChunkName, root: RootID) async throws -> [UInt8] {
        let bytes: [UInt8]
        do {
            bytes = try await get(StoreLayout.chunk(name, root: root))
        } catch let error as StoreError where error.kind == .notFound {
            throw StoreError(.notFound, "chunk \(name) is missing from \(location) (root \(root))")
        }
        guard name.matches(bytes) else {
            throw StoreError(.corrupt, "chunk \(name) in \(location) (root \(root)) is corrupt: its \(bytes.count) bytes hash to \(ChunkName.of(bytes))")
        }
        return bytes
    }

    /// The object at `key`, or nil when the store has none; any other error is thrown, so a
    /// store that cannot be read never passes for an object that is absent.
    public func getIfPresent(_ key: StoreKey) async throws -> [UInt8]? {
        do {
            return try await get(key)
        } catch let error as StoreError where error.kind == .notFound {
            return nil
        }
    }

    public func putChunk(_ name: ChunkName, _ ciphertext: [UInt8], root: RootID) async throws {
        try await put(StoreLayout.chunk(name, root: root), ciphertext)
    }

    /// Stores whose every write is durable when it returns (S3) have nothing to do.
    public func sync() async throws {}

    /// Lists the prefix and deletes each key.
    @discardableResult
    public func deleteAll(under prefix: String) async throws -> Int {
        var count = 0
        for key in try await listAll(under: prefix) {
            try await delete(key)
            count += 1
        }
        return count
    }

    public func hasChunk(_ name: ChunkName, root: RootID) async throws -> Bool {
        try await exists(StoreLayout.chunk(name, root: root))
    }

    /// All keys under `prefix`, collected.
    public func listAll(under prefix: String) async throws -> [StoreKey] {
        var keys: [StoreKey] = []
        for try await key in list(under: prefix) { keys.append(key) }
        return keys
    }
}

/// Where objects live in a store. Everything belongs to a root, so deleting a root is deleting
/// one prefix:
///
/// ```
/// roots/ROOT/chunks/AB/ABCDEF…            sealed chunk, named by SHA-256 of its ciphertext
/// roots/ROOT/manifests/TENANT/ID          sealed manifest
/// roots/ROOT/layers/TENANT/ID             sealed layer record (incremental push)
/// roots/ROOT/records/TENANT/ID            sealed access record of manifest ID (prefetch)
/// roots/ROOT/configs/TENANT/ID            sealed image config of manifest ID (how to run it)
/// ```
public enum StoreLayout {
    public static func root(_ root: RootID) -> String { "roots/\(root)" }
    public static func chunks(root: RootID) -> String { "roots/\(root)/chunks" }
    public static func manifests(root: RootID) -> String { "roots/\(root)/manifests" }
    public static func manifests(root: RootID, tenant: Tenant) -> String { "roots/\(root)/manifests/\(tenant)" }

    public static func chunk(_ name: ChunkName, root: RootID) -> StoreKey {
        let hex = name.hex
        return StoreKey(unchecked: "roots/\(root)/chunks/\(hex.prefix(2))/\(hex)")
    }

    public static func manifest(id: String, root: RootID, tenant: Tenant) -> StoreKey {
        StoreKey(unchecked: "roots/\(root)/manifests/\(tenant)/\(id)")
    }

    public static func layerRecord(id: String, root: RootID, tenant: Tenant) -> StoreKey {
        StoreKey(unchecked: "roots/\(root)/layers/\(tenant)/\(id)")
    }

    /// Where the access record of manifest `id` lives: next to it, under the same root.
    public static func accessRecord(id: String, root: RootID, tenant: Tenant) -> StoreKey {
        StoreKey(unchecked: "roots/\(root)/records/\(tenant)/\(id)")
    }

    /// Where the image config of manifest `id` lives: next to it, under the same root, so that
    /// deleting the root deletes it too.
    public static func imageConfig(id: String, root: RootID, tenant: Tenant) -> StoreKey {
        StoreKey(unchecked: "roots/\(root)/configs/\(tenant)/\(id)")
    }

    /// Where the memory snapshot of image manifest `id` lives: next to it, under the same root
    /// (its memory manifest is with the other manifests).
    public static func snapshot(id: String, root: RootID, tenant: Tenant) -> StoreKey {
        StoreKey(unchecked: "roots/\(root)/snapshots/\(tenant)/\(id)")
    }

    /// Where the patch table of memory manifest `id` lives (which of its chunks are stored as
    /// deltas against a base snapshot): next to it, under the same root.
    public static func patchTable(id: String, root: RootID, tenant: Tenant) -> StoreKey {
        StoreKey(unchecked: "roots/\(root)/patches/\(tenant)/\(id)")
    }

    /// The id, root and tenant of the manifest at `key` (`manifest(id:root:tenant:)` read
    /// backwards), so that the objects kept beside it can be named before it is opened; nil for
    /// any other key.
    public static func manifestLocation(of key: StoreKey) -> ManifestLocation? {
        let parts = key.path.split(separator: "/")
        guard parts.count == 5, parts[0] == "roots", parts[2] == "manifests",
              let root = try? RootID(String(parts[1])), let tenant = try? Tenant(String(parts[3])) else { return nil }
        return ManifestLocation(id: String(parts[4]), root: root, tenant: tenant)
    }

    /// The chunk a chunk key names, or nil for any other key.
    public static func chunkName(in key: StoreKey) -> ChunkName? {
        let parts = key.path.split(separator: "/")
        guard parts.count == 5, parts[0] == "roots", parts[2] == "chunks" else { return nil }
        return try? ChunkName(hex: parts[4])
    }
}

/// Where a manifest is kept, and the keys of the objects kept beside it (`StoreLayout`).
public struct ManifestLocation: Sendable, Hashable {
    public var id: String
    public var root: RootID
    public var tenant: Tenant

    public init(id: String, root: RootID, tenant: Tenant) {
        self.id = id
        self.root = root
        self.tenant = tenant
    }

    /// Where the manifest with `header` belongs.
    public init(_ header: ManifestHeader) {
        self.init(id: header.id, root: header.root, tenant: header.tenant)
    }

    public var manifest: StoreKey { StoreLayout.manifest(id: id, root: root, tenant: tenant) }
    public var accessRecord: StoreKey { StoreLayout.accessRecord(id: id, root: root, tenant: tenant) }
    public var imageConfig: StoreKey { StoreLayout.imageConfig(id: id, root: root, tenant: tenant) }
    public var snapshot: StoreKey { StoreLayout.snapshot(id: id, root: root, tenant: tenant) }
    public var patchTable: StoreKey { StoreLayout.patchTable(id: id, root: root, tenant: tenant) }

    /// What an agent opens with the manifest, besides the manifest itself: its access record,
    /// its image config unless `imageConfig` is false (a snapshot's memory has none) and its
    /// memory snapshot record when `snapshotRecord`. The agent asks for them all at once, and
    /// `thaw run` reads them early while its agent starts: one list keeps the two in step.
    public func openedWith(imageConfig: Bool, snapshotRecord: Bool) -> (accessRecord: StoreKey, imageConfig: StoreKey?, snapshot: StoreKey?) {
        (accessRecord, imageConfig ? self.imageConfig : nil, snapshotRecord ? snapshot : nil)
    }
}
