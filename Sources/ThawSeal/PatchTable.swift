import ThawBinary

/// Which chunks of a memory manifest the store keeps as deltas (compressed, and patched against
/// a base snapshot's RAM when it has one: similar-page deduplication, Medes), and where each
/// delta is.
///
/// The memory manifest itself is unchanged: it names every chunk by its convergent name and
/// key, as if it were stored whole. A patched chunk is not in the store under that name; its
/// delta is, as an ordinary sealed chunk of its own. A reader that finds the chunk in no cache
/// fetches the delta, rebuilds the chunk from it and the base pages it names, and checks the
/// result against the chunk's name.
///
/// Sealed like a manifest. The public part names the memory manifest, its base and the deltas,
/// so garbage collection can follow every reference without a key; the delta keys are sealed.
///
/// ```
/// public:  memory manifest id (short string) | base memory manifest id (short string, empty
///          for none: the deltas are only compressed)
///          | chunk count u32 | entry count u32 | per entry: chunk index u32, delta name (32)
/// payload: per entry: delta key (32)
/// ```
/// Entries are in ascending chunk order, each chunk at most once.
public struct PatchTable: Sendable, Equatable {
    public static let formatVersion: UInt16 = 1

    /// The memory manifest whose chunks are patched.
    public var memoryManifestID: String
    /// The memory manifest of the base snapshot, in the same root, itself patched against no
    /// base; nil when the deltas name no base page.
    public var baseManifestID: String?
    public var chunkCount: Int
    /// Per patched chunk index, its delta (a sealed chunk of the same root).
    public var deltas: [Int: ChunkRef]

    public init(memoryManifestID: String, baseManifestID: String?, chunkCount: Int, deltas: [Int: ChunkRef]) {
        self.memoryManifestID = memoryManifestID
        self.baseManifestID = baseManifestID
        self.chunkCount = chunkCount
        self.deltas = deltas
    }

    func publicPart() -> [UInt8] {
        var writer = ByteWriter()
        writer.shortString(memoryManifestID)
        writer.shortString(baseManifestID ?? "")
        writer.u32(UInt32(chunkCount))
        writer.u32(UInt32(deltas.count))
        for (index, ref) in deltas.sorted(by: { $0.key < $1.key }) {
            writer.u32(UInt32(index))
            writer.raw(ref.name.bytes)
        }
        return writer.bytes
    }

    /// The table sealed for `tenant`.
    public func sealed(tenant: Tenant, keys: any TenantKeyProvider) async throws -> [UInt8] {
        var payload = ByteWriter()
        for (_, ref) in deltas.sorted(by: { $0.key < $1.key }) { payload.raw(ref.key.bytes) }
        return try await SealedObject.seal(kind: .patchTable, version: Self.formatVersion, publicPart: publicPart(),
                                           payload: payload.bytes, tenant: tenant, keys: keys)
    }

    /// What a sealed table names, read without a key (garbage collection).
    public struct References: Sendable, Equatable {
        public var memoryManifestID: String
        public var baseManifestID: String?
        public var chunkCount: Int
        /// Chunk index and delta name of each entry, in chunk order.
        public var deltas: [(index: Int, name: ChunkName)]

        public static func == (a: References, b: References) -> Bool {
            a.memoryManifestID == b.memoryManifestID && a.baseManifestID == b.baseManifestID && a.chunkCount == b.chunkCount
                && a.deltas.map(\.index) == b.deltas.map(\.index) && a.deltas.map(\.name) == b.deltas.map(\.name)
        }
    }

    /// The manifests and deltas a sealed table names.
    ///
    /// - Throws: `SealError(.malformedManifest)` when it is truncated, has bytes after its end,
    ///   or lists a chunk out of range or out of order.
    public static func references(in bytes: [UInt8], what: String = "patch table") throws -> References {
        let parsed = try SealedObject.parse(bytes, expecting: .patchTable, versions: formatVersion...formatVersion, what: what)
        var reader = ByteReader(parsed.publicPart, what: what)
        return try malformedOnTruncation {
            let memory = try reader.shortString("memory manifest id"), base = try reader.shortString("base manifest id")
            let chunkCount = Int(try reader.u32("chunk count")), count = Int(try reader.u32("entry count"))
            guard count <= chunkCount else {
                throw SealError(.malformedManifest, "\(what) lists \(count) patched chunks of a manifest of \(chunkCount)")
            }
            var deltas: [(index: Int, name: ChunkName)] = []
            deltas.reserveCapacity(count)
            for _ in 0..<count {
                let index = Int(try reader.u32("chunk index"))
                let previous = deltas.last?.index ?? -1
                guard index < chunkCount, previous < index else {
                    throw SealError(.malformedManifest, "\(what) lists chunk \(index) out of range (\(chunkCount) chunks) or out of order")
                }
                deltas.append((index, ChunkName(unchecked: try reader.raw(32, "delta name"))))
            }
            guard reader.remaining == 0 else {
                throw SealError(.malformedManifest, "\(what) has \(reader.remaining) bytes after its end")
            }
            return References(memoryManifestID: memory, baseManifestID: base.isEmpty ? nil : base, chunkCount: chunkCount, deltas: deltas)
        }
    }

    /// Opens a sealed table and checks it belongs to the memory manifest `memory`.
    ///
    /// - Throws: `SealError` — `.malformedManifest` when it is truncated or belongs to another
    ///   manifest; `.unsupportedVersion`, `.wrongKey`, `.tampered`.
    public static func open(_ bytes: [UInt8], for memory: ManifestHeader, keys: any TenantKeyProvider,
                            what: String = "patch table") async throws -> PatchTable {
        let references = try references(in: bytes, what: what)
        guard references.memoryManifestID == memory.id, references.chunkCount == memory.chunkCount else {
            throw SealError(.malformedManifest, "\(what) belongs to manifest \(references.memoryManifestID), not \(memory.id)")
        }
        let parsed = try SealedObject.parse(bytes, expecting: .patchTable, versions: formatVersion...formatVersion, what: what)
        let payload = try await SealedObject.open(parsed, tenant: memory.tenant, keys: keys, what: what)
        guard payload.count == 32 * references.deltas.count else {
            throw SealError(.malformedManifest, "\(what) has \(payload.count) bytes of keys for \(references.deltas.count) deltas")
        }
        var deltas: [Int: ChunkRef] = [:]
        for (number, entry) in references.deltas.enumerated() {
            deltas[entry.index] = ChunkRef(name: entry.name, key: ChunkKey(unchecked: Array(payload[(32 * number)..<(32 * number + 32)])))
        }
        return PatchTable(memoryManifestID: memory.id, baseManifestID: references.baseManifestID, chunkCount: memory.chunkCount,
                          deltas: deltas)
    }
}
