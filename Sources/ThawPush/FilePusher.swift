import Crypto
import Foundation
import Glibc
import ThawBinary
public import ThawSeal
import ThawStore

/// What pushing a flat file stored.
public struct FilePushReport: Sendable {
    public var manifestID: String
    public var header: ManifestHeader
    public var progress: PushProgress
    /// Chunks holding data, against chunks that are holes or zeros in the file.
    public var dataChunks: Int
    public var zeroChunks: Int
    /// Chunks stored as deltas: compressed, and patched against the base if there is one (see `FilePatching`).
    public var patchedChunks: Int
}

/// How a snapshot's RAM is pushed as deltas (compressed, and against a base snapshot when
/// there is one: similar-page deduplication): each chunk the store lacks is offered to `delta`
/// with its index, which returns the chunk's delta when that is worth storing instead
/// (ThawMedes' `ChunkDelta.compressed` and `BaseSnapshotPages.delta`), or nil.
public struct FilePatching: Sendable {
    /// The base snapshot's memory manifest the deltas name pages of; nil when they name none
    /// (they are only compressed).
    public var baseManifestID: String?
    public var delta: @Sendable (_ chunk: [UInt8], _ index: Int) -> [UInt8]?

    public init(baseManifestID: String?, delta: @escaping @Sendable (_ chunk: [UInt8], _ index: Int) -> [UInt8]?) {
        self.baseManifestID = baseManifestID
        self.delta = delta
    }
}

extension Pusher {
    /// `lseek` whences Glibc's module leaves out (Linux values).
    static let seekData: Int32 = 3

    /// Seals a flat file (a VM's RAM) into chunks and stores it under a manifest with no layers,
    /// the same format an image's manifest has, so the agent serves it like an image.
    ///
    /// Only regions the file holds data in are read (`SEEK_DATA`): a guest's RAM file is mostly
    /// holes, pages it never touched. Chunks that are all zeros are not stored, as for images.
    /// The header's digest is SHA-256 over the file's size, the chunk size and each stored
    /// chunk's index and convergent key, so equal contents give the same manifest id.
    ///
    /// With `patching`, chunks the store lacks may be stored as deltas against a base snapshot;
    /// their patch table (`PatchTable`) is written before the manifest, so the manifest never
    /// appears without it.
    ///
    /// - Throws: `PushError` when the file cannot be read; store errors as they come.
    public func pushFile(at path: String, patching: FilePatching? = nil) async throws -> FilePushReport {
        let chunkSize = Int(options.chunkSize)
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw PushError("cannot open \(path): \(String(cString: strerror(errno)))") }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            close(descriptor)
            throw PushError("cannot read the size of \(path): \(String(cString: strerror(errno)))")
        }
        let size = UInt64(info.st_size)
        let tenant = options.tenant
        let salt = Salt(root: options.root, replica: Salt.replica(forTenant: tenant.name, replicas: options.saltReplicas))
        let state = PushState()
        let patched = Locked<[Int: ChunkRef]>([:])
        let channel = ChunkChannel(capacity: options.concurrency + 4)
        let reading = Task.detached { () throws -> Void in
            try await Self.onThread {
                defer {
                    close(descriptor)
                    channel.finish()
                }
                var offset = 0
                while UInt64(offset) < size {
                    let data = lseek(descriptor, off_t(offset), Self.seekData)
                    if data < 0 { break }  // ENXIO: no data after offset
                    let start = Int(data) / chunkSize * chunkSize
                    var chunk = [UInt8](repeating: 0, count: chunkSize)
                    var filled = 0
                    while filled < chunkSize, UInt64(start + filled) < size {
                        let count = chunk[filled...].withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, off_t(start + filled)) }
                        if count < 0 { throw PushError("cannot read \(path) at \(start + filled): \(String(cString: strerror(errno)))") }
                        if count == 0 { break }
                        filled += count
                    }
                    _ = state.add(read: UInt64(filled))
                    try channel.send(ChunkJob(index: start / chunkSize, plaintext: chunk))
                    offset = start + chunkSize
                }
            }
        }
        let table: [Int: ChunkRef]
        do {
            table = try await sealAndUpload(channel, salt: salt, state: state, patching: patching, patched: patched)
        } catch {
            channel.close()
            _ = try? await reading.value
            throw error
        }
        try await reading.value

        var digest = SHA256()
        var fields = ByteWriter()
        fields.u64(size)
        fields.u64(UInt64(chunkSize))
        digest.update(data: fields.bytes)
        for (index, ref) in table.sorted(by: { $0.key < $1.key }) {
            var entry = ByteWriter()
            entry.u64(UInt64(index))
            digest.update(data: entry.bytes)
            digest.update(data: ref.key.bytes)
        }
        let chunkCount = Int((size + UInt64(chunkSize) - 1) / UInt64(chunkSize))
        let header = ManifestHeader(imageDigest: Array(digest.finalize()), imageSize: UInt64(chunkCount) * UInt64(chunkSize),
                                    chunkSize: UInt32(chunkSize), root: options.root, saltReplica: salt.replica, tenant: tenant, layers: [])
        let manifest = Manifest(header: header, chunks: (0..<chunkCount).map { table[$0] })
        try await store.sync()
        let deltas = patched.withLock { $0 }
        if let patching, !deltas.isEmpty {
            let patches = PatchTable(memoryManifestID: header.id, baseManifestID: patching.baseManifestID, chunkCount: chunkCount, deltas: deltas)
            try await store.put(StoreLayout.patchTable(id: header.id, root: options.root, tenant: tenant),
                                try await patches.sealed(tenant: tenant, keys: keys))
        }
        try await store.put(StoreLayout.manifest(id: header.id, root: options.root, tenant: tenant), try await manifest.sealed(keys: keys))
        return FilePushReport(manifestID: header.id, header: header, progress: state.snapshot(), dataChunks: table.count,
                              zeroChunks: chunkCount - table.count, patchedChunks: deltas.count)
    }
}
