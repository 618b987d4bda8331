public import ThawSeal

/// Rebuilding a chunk the store keeps as a delta against a base snapshot (see `PatchTable`):
/// what the agent's read path and garbage collection's copy both do, with their own ways of
/// reading base pages.
public enum PatchedChunk {
    /// Why a patched chunk could not be rebuilt.
    public struct RebuildError: Error, Sendable, CustomStringConvertible {
        public let description: String

        public init(description: String) { self.description = description }
    }

    /// The plaintext of a patched chunk: its delta opened (and checked against the delta's
    /// name), the base pages it names read with `basePage` (page number → page, concurrently),
    /// and the delta applied to them.
    ///
    /// - Throws: `SealError(.chunkMismatch)` when the delta is not the named one; `RebuildError`
    ///   when it does not parse or apply; whatever `basePage` throws.
    public static func rebuild(deltaCiphertext: [UInt8], delta: ChunkRef,
                               basePage: @escaping @Sendable (UInt64, Int) async throws -> [UInt8]) async throws -> [UInt8] {
        let plaintext = try ChunkSealer.open(deltaCiphertext, name: delta.name, key: delta.key)
        let parsed: ChunkDelta.Parsed
        do {
            parsed = try ChunkDelta.parse(plaintext)
        } catch {
            throw RebuildError(description: "its delta \(delta.name) is malformed: \(error)")
        }
        let pageSize = parsed.pageSize, named = parsed.basePages
        let pages: [UInt64: [UInt8]] = named.isEmpty ? [:] : try await withThrowingTaskGroup(of: (UInt64, [UInt8]).self) { group in
            for page in named {
                group.addTask { (page, try await basePage(page, pageSize)) }
            }
            var pages: [UInt64: [UInt8]] = [:]
            for try await (number, bytes) in group { pages[number] = bytes }
            return pages
        }
        do {
            return try ChunkDelta.rebuild(parsed, basePages: pages)
        } catch {
            throw RebuildError(description: "its delta \(delta.name) does not apply to the base: \(error)")
        }
    }

    /// The ciphertext of a rebuilt chunk, checked to be the chunk `expected` names
    /// (`ChunkSealer.encrypt(_:as:)`).
    ///
    /// - Throws: `RebuildError` when it is not: the delta or the base is not what the manifest
    ///   was pushed with.
    public static func seal(_ plaintext: [UInt8], expecting expected: ChunkRef) throws -> [UInt8] {
        guard let ciphertext = ChunkSealer.encrypt(plaintext, as: expected) else {
            throw RebuildError(description: "rebuilt from its delta it is not the chunk \(expected.name) the manifest names")
        }
        return ciphertext
    }
}
