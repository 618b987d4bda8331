public import ThawFUSE
public import ThawNBD
public import ThawSeal
public import ThawServe
import Synchronization
public import NIOCore

/// One manifest an agent serves: its lazy image, the recording of this start (when the
/// manifest had no access record), and the prefetch of the record it had.
///
/// It is the export NBD clients read and the file the FUSE mount shows.
public final class ServedImage: NBDExport, FUSEFile, Sendable {
    /// The manifest id; also the NBD export name.
    public let id: String
    public let image: LazyImage
    /// The record being prefetched, when the manifest had one.
    public let prefetchRecord: AccessRecord?
    let prefetchTask = Mutex<Task<Void, Never>?>(nil)
    let prefetchDone = Atomic<Bool>(false)
    let savedRecording = Mutex<[UInt32]?>(nil)

    /// The image config stored with the manifest (`ImageConfigLookup`), checked against its
    /// digest, as read when the image was opened; nil when there was none or it could not be
    /// read (ask the store again for the error) and for memory snapshots.
    public let imageConfigJSON: [UInt8]?

    /// What the store held for the image's memory snapshot record (`StoreLayout.snapshot`) when
    /// the image was opened, asked for with the manifest when the opener wanted it: a start that
    /// opened the image itself decides between its sandboxes without another round trip. A
    /// server that keeps images open asks the store again, as a snapshot may have been taken or
    /// deleted since.
    public let snapshotRecordAtOpen: SnapshotRecordAtOpen

    /// The store's answer for a snapshot record, as read when an image was opened.
    public enum SnapshotRecordAtOpen: Sendable {
        /// There was none.
        case absent
        /// The sealed record.
        case present([UInt8])
        /// Not asked for (or for a memory image, or a manifest found away from its place), or
        /// the read failed: ask the store.
        case unknown
    }

    init(id: String, image: LazyImage, prefetchRecord: AccessRecord?, imageConfigJSON: [UInt8]? = nil,
         snapshotRecordAtOpen: SnapshotRecordAtOpen = .unknown) {
        self.id = id
        self.image = image
        self.prefetchRecord = prefetchRecord
        self.imageConfigJSON = imageConfigJSON
        self.snapshotRecordAtOpen = snapshotRecordAtOpen
    }

    /// The chunks, in first-touch order, that the record this agent saved for this image holds
    /// (nil until it saved one): what a long-running agent, which keeps the image open,
    /// prefetches for its later starts.
    public var savedRecord: [UInt32]? { savedRecording.withLock { $0 } }

    /// The chunks the recording saved for the image, in order.
    func noteSaved(_ order: [UInt32]) { savedRecording.withLock { $0 = order } }

    /// The file name under the agent's mount directory.
    public var fileName: String { id + ".ext4" }

    public var size: UInt64 { image.size }

    public var exportDescription: String? {
        "Thaw image \(id) (\(image.manifest.header.tenant), \(size / (1 << 20)) MiB)"
    }

    /// The bytes at `offset`, up to `length` of them: fewer at the end of the image (FUSE asks
    /// past it; the NBD server never does).
    public func read(offset: UInt64, length: Int) async throws -> [UInt8] {
        let available = offset < size ? Int(min(UInt64(length), size - offset)) : 0
        return try await image.read(offset: min(offset, size), length: available)
    }

    /// FUSE's read of what is in memory, on the calling thread (see `LazyImage.readNow`).
    public func readNow(offset: UInt64, length: Int) -> [UInt8]? {
        guard offset < size else { return nil }
        return image.readNow(offset: offset, length: Int(min(UInt64(length), size - offset)))
    }

    /// NBD's read: decrypts straight into the reply buffer.
    public func read(offset: UInt64, length: Int, into buffer: inout ByteBuffer) async throws {
        try await image.read(offset: offset, length: length, into: &buffer)
    }

    /// Whether the prefetch has fetched everything its record lists (true when there is none).
    public var prefetchFinished: Bool { prefetchRecord == nil || prefetchDone.load(ordering: .acquiring) }

    func startPrefetch(concurrency: Int) {
        guard let record = prefetchRecord else { return }
        let task = Task { [self] in
            await image.prefetch(record, concurrency: concurrency)
            prefetchDone.store(true, ordering: .releasing)
        }
        prefetchTask.withLock { $0 = task }
    }

    /// Stops the prefetch of the access record (a restore of a memory snapshot does not read
    /// what a cold boot reads: the guest's page cache comes back with its memory).
    public func stopPrefetch() {
        prefetchTask.withLock { $0 }?.cancel()
    }
}

/// NBD replies are assembled in NIO buffers: the read path decrypts into them directly.
extension ByteBuffer: ReadSink {
    public mutating func append(_ bytes: UnsafeRawBufferPointer) { writeBytes(bytes) }
    public mutating func appendZeros(_ count: Int) { writeRepeatingByte(0, count: count) }
    public mutating func append(count: Int, filledBy fill: (UnsafeMutableRawBufferPointer) -> Void) {
        writeWithUnsafeMutableBytes(minimumWritableBytes: count) { free in
            fill(UnsafeMutableRawBufferPointer(rebasing: free[0..<count]))
            return count
        }
    }
}
