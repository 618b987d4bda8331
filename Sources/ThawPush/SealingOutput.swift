import Glibc
import SystemPackage
import ThawExt4
import ThawFlatten
import ThawTar

/// The flatten output of a push: instead of writing an image file, it cuts the data regions into
/// chunks as they fill and hands each full chunk to the sealers; the image never exists whole.
///
/// Metadata comes last, at scattered offsets in the first chunk and in the tail after the last
/// region; it goes to an unlinked temporary file, and the chunks it touched are sent at commit.
/// Chunks nobody writes are zero and are never sent. A region laid out from a layer record is
/// skipped: its chunks are known already.
final class SealingOutput: FlattenOutput {
    let chunkSize: Int
    private let channel: ChunkChannel
    /// The chunk being filled with file data.
    private var buffer: [UInt8]
    private var bufferChunk: Int?
    private var filled = 0
    /// Chunks already sent as data; metadata must not land in them.
    private var lastDataChunk = -1
    private let spill: FileDescriptor
    private let spillPath: String
    private var metadataChunks = Set<Int>()
    /// Called with the number of file bytes appended, for progress.
    var onAppend: ((UInt64) -> Void)?

    init(chunkSize: Int, channel: ChunkChannel, temporaryDirectory: String) throws {
        self.chunkSize = chunkSize
        self.channel = channel
        buffer = [UInt8](repeating: 0, count: chunkSize)
        var template = Array((temporaryDirectory + "/thaw-push-metadata-XXXXXX").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else {
            throw PushError("cannot create a temporary file in \(temporaryDirectory): \(String(cString: strerror(errno)))")
        }
        spillPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        unlink(spillPath)
        spill = FileDescriptor(rawValue: fd)
    }

    deinit { try? spill.close() }

    func seek(to offset: UInt64) throws {
        let chunk = Int(offset / UInt64(chunkSize))
        let within = Int(offset % UInt64(chunkSize))
        if let current = bufferChunk {
            if chunk == current {
                precondition(within >= filled, "flatten output moved backwards")
                zero(filled..<within)
                filled = within
                return
            }
            try sendBuffer()
        }
        bufferChunk = chunk
        zero(0..<within)
        filled = within
    }

    func appendContent(of reader: TarReader, size: UInt64) throws -> UInt64 {
        var remaining = size
        while remaining > 0 {
            if filled == chunkSize { try advance() }
            let want = Int(min(UInt64(chunkSize - filled), remaining))
            let n = try buffer.withUnsafeMutableBytes {
                try reader.readData(into: UnsafeMutableRawBufferPointer(rebasing: $0[filled..<(filled + want)]))
            }
            guard n > 0 else { throw TarError(.truncated, "entry ends early") }
            filled += n
            remaining -= UInt64(n)
            onAppend?(UInt64(n))
        }
        var padding = (Ext4Writer.blockSize - Int(size % UInt64(Ext4Writer.blockSize))) % Ext4Writer.blockSize
        while padding > 0 {
            if filled == chunkSize { try advance() }
            let n = min(padding, chunkSize - filled)
            zero(filled..<(filled + n))
            filled += n
            padding -= n
        }
        return size
    }

    func skipRegion(at offset: UInt64, length: UInt64) throws {
        if bufferChunk != nil { try sendBuffer() }
        lastDataChunk = max(lastDataChunk, Int((offset + length + UInt64(chunkSize) - 1) / UInt64(chunkSize)) - 1)
    }

    func write(_ bytes: [UInt8], at offset: UInt64) throws {
        guard !bytes.isEmpty else { return }
        if bufferChunk != nil { try sendBuffer() }
        let first = Int(offset / UInt64(chunkSize))
        let last = Int((offset + UInt64(bytes.count) - 1) / UInt64(chunkSize))
        for chunk in first...last {
            guard chunk == 0 || chunk > lastDataChunk else {
                throw PushError("filesystem metadata at offset \(offset) overlaps file data in chunk \(chunk)")
            }
            metadataChunks.insert(chunk)
        }
        do {
            _ = try bytes.withUnsafeBytes { try spill.writeAll(toAbsoluteOffset: Int64(offset), $0) }
        } catch {
            throw PushError("writing filesystem metadata to a temporary file: \(error)")
        }
    }

    func commit(size: UInt64) throws {
        if bufferChunk != nil { try sendBuffer() }
        for chunk in metadataChunks.sorted() {
            var bytes = [UInt8](repeating: 0, count: chunkSize)
            var done = 0
            while done < chunkSize {
                let n = try bytes.withUnsafeMutableBytes {
                    try spill.read(fromAbsoluteOffset: Int64(chunk * chunkSize + done), into: UnsafeMutableRawBufferPointer(rebasing: $0[done...]))
                }
                if n == 0 { break }  // the rest of a sparse tail reads as zeros
                done += n
            }
            try channel.send(ChunkJob(index: chunk, plaintext: bytes))
        }
    }

    private func advance() throws {
        let next = bufferChunk! + 1
        try sendBuffer()
        bufferChunk = next
        filled = 0
    }

    private func sendBuffer() throws {
        guard let chunk = bufferChunk else { return }
        zero(filled..<chunkSize)
        var full = [UInt8](repeating: 0, count: chunkSize)
        swap(&full, &buffer)
        lastDataChunk = max(lastDataChunk, chunk)
        bufferChunk = nil
        filled = 0
        try channel.send(ChunkJob(index: chunk, plaintext: full))
    }

    private func zero(_ range: Range<Int>) {
        guard !range.isEmpty else { return }
        buffer.withUnsafeMutableBytes { _ = UnsafeMutableRawBufferPointer(rebasing: $0[range]).initializeMemory(as: UInt8.self, repeating: 0) }
    }
}
