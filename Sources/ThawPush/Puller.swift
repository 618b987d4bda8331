import Glibc
import Synchronization
public import ThawSeal
public import ThawStore
import ThawMedes
import SystemPackage

/// Rebuilds an image file from a manifest, verifying every chunk twice: the ciphertext against
/// its name (as every read does), and the plaintext against its convergent key (the key is the
/// hash of the salted plaintext, so a wrong key or a decryption slip cannot pass). A snapshot's
/// RAM whose chunks the store keeps as deltas is rebuilt from them (`StoredMemory`).
public struct Puller: Sendable {
    public var store: any ChunkStore
    public var keys: any TenantKeyProvider
    public var concurrency = 8

    public init(store: any ChunkStore, keys: any TenantKeyProvider) {
        self.store = store
        self.keys = keys
    }

    public struct Report: Sendable {
        public var header: ManifestHeader
        public var chunksFetched: Int
        public var bytesFetched: UInt64
        public var zeroChunks: Int
        /// Chunks rebuilt from the deltas the store keeps in their place.
        public var chunksRebuilt: Int
    }

    /// Writes the image of `manifest` to `destination`, replacing it only when every chunk verified.
    public func pull(_ manifest: Manifest, to destination: String) async throws -> Report {
        MallocTuning.keepLargeBuffers()
        let header = manifest.header
        let temporary = destination + ".partial-\(getpid())"
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(temporary), .writeOnly, options: [.create, .truncate, .closeOnExec],
                                         permissions: [.ownerReadWrite, .groupRead, .otherRead])
            try fd.resize(to: Int64(header.imageSize))
        } catch {
            throw PushError("cannot create \(temporary): \(error)")
        }
        var committed = false
        defer {
            if !committed {
                try? fd.close()
                unlink(temporary)
            }
        }
        let salt = header.salt
        let chunkSize = Int(header.chunkSize)
        let store = store
        let fetched = Locked((count: 0, bytes: UInt64(0), rebuilt: 0))
        let memory = try await StoredMemory.open(manifest, store: store, keys: keys)
        try await withThrowingTaskGroup(of: Void.self) { group in
            var running = 0
            for (index, chunk) in manifest.chunks.enumerated() {
                guard let chunk else { continue }
                if running >= concurrency {
                    try await group.next()
                    running -= 1
                }
                running += 1
                group.addTask {
                    let ciphertext: [UInt8], plaintext: [UInt8]
                    let delta = memory.patches?.deltas[index]
                    if let delta {
                        ciphertext = try await store.getChunk(delta.name, root: salt.root)
                        plaintext = try await memory.rebuild(delta: delta, ciphertext: ciphertext)
                    } else {
                        ciphertext = try await store.getChunk(chunk.name, root: salt.root)
                        plaintext = try ChunkSealer.open(ciphertext, name: chunk.name, key: chunk.key)
                    }
                    guard plaintext.count == chunkSize, ChunkSealer.key(for: plaintext, salt: salt) == chunk.key else {
                        throw PushError("chunk \(index) (\(chunk.name)) in \(store.location) decrypts to the wrong plaintext")
                    }
                    do {
                        _ = try plaintext.withUnsafeBytes { try fd.writeAll(toAbsoluteOffset: Int64(index * chunkSize), $0) }
                    } catch {
                        throw PushError("writing \(temporary): \(error)")
                    }
                    fetched.withLock {
                        $0.count += 1
                        $0.bytes += UInt64(ciphertext.count)
                        if delta != nil { $0.rebuilt += 1 }
                    }
                }
            }
            try await group.waitForAll()
        }
        do {
            guard fsync(fd.rawValue) == 0 else { throw Errno(rawValue: errno) }
            try fd.close()
        } catch {
            throw PushError("finishing \(temporary): \(error)")
        }
        committed = true
        guard rename(temporary, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw PushError("cannot rename \(temporary) to \(destination): \(reason)")
        }
        let totals = fetched.withLock { $0 }
        return Report(header: header, chunksFetched: totals.count, bytesFetched: totals.bytes,
                      zeroChunks: manifest.chunks.count(where: { $0 == nil }), chunksRebuilt: totals.rebuilt)
    }
}
