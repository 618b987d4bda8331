import Glibc
import SystemPackage
import ThawExt4
import ThawTar

/// The image file being written: a temporary file beside the destination that becomes the
/// destination only when everything succeeded, so a refused image leaves nothing behind and an
/// existing file at the destination is untouched until then.
///
/// File data is appended through a large buffer; metadata is written with `pwrite`.
final class OutputImage: FlattenOutput {
    static let bufferSize = 4 << 20
    let destination: String
    let temporaryPath: String
    private let descriptor: FileDescriptor
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: OutputImage.bufferSize, alignment: 4096)
    private var buffered = 0
    /// Byte offset in the image where the buffer's first byte goes.
    private var bufferOffset: UInt64 = 0
    private var committed = false

    init(destination: String) throws {
        self.destination = destination
        temporaryPath = destination + ".partial-\(getpid())"
        do {
            descriptor = try FileDescriptor.open(
                FilePath(temporaryPath), .writeOnly, options: [.create, .truncate, .closeOnExec],
                permissions: [.ownerReadWrite, .groupRead, .otherRead])
        } catch {
            buffer.deallocate()
            throw FlattenError("cannot create \(temporaryPath): \(error)")
        }
    }

    deinit {
        if !committed {
            try? descriptor.close()
            unlink(temporaryPath)
        }
        buffer.deallocate()
    }

    /// Moves the append position to `offset` (block aligned), flushing what is buffered.
    func seek(to offset: UInt64) throws {
        if bufferOffset + UInt64(buffered) == offset { return }
        try flush()
        bufferOffset = offset
    }

    /// Appends a file's content read from `reader`, padded with zeros to whole blocks.
    ///
    /// - Returns: how many bytes were read.
    func appendContent(of reader: TarReader, size: UInt64) throws -> UInt64 {
        var remaining = size
        while remaining > 0 {
            if buffered == buffer.count { try flush() }
            let space = UnsafeMutableRawBufferPointer(rebasing: buffer[buffered..<min(buffer.count, buffered + Int(min(remaining, UInt64(Int.max))))])
            let n = try reader.readData(into: space)
            guard n > 0 else { throw TarError(.truncated, "entry ends early") }
            buffered += n
            remaining -= UInt64(n)
        }
        let padding = (Ext4Writer.blockSize - Int(size % UInt64(Ext4Writer.blockSize))) % Ext4Writer.blockSize
        if padding > 0 {
            if buffered + padding > buffer.count { try flush() }
            UnsafeMutableRawBufferPointer(rebasing: buffer[buffered..<(buffered + padding)]).initializeMemory(as: UInt8.self, repeating: 0)
            buffered += padding
        }
        return size
    }

    func skipRegion(at offset: UInt64, length: UInt64) throws {
        throw FlattenError("an image file cannot take a layer laid out from its index; the layer's data is needed")
    }

    func flush() throws {
        guard buffered > 0 else { return }
        do {
            _ = try descriptor.writeAll(toAbsoluteOffset: Int64(bufferOffset), UnsafeRawBufferPointer(rebasing: buffer[0..<buffered]))
        } catch {
            throw FlattenError("writing \(temporaryPath): \(error)")
        }
        bufferOffset += UInt64(buffered)
        buffered = 0
    }

    func write(_ bytes: [UInt8], at offset: UInt64) throws {
        try flush()
        do {
            _ = try bytes.withUnsafeBytes { try descriptor.writeAll(toAbsoluteOffset: Int64(offset), $0) }
        } catch {
            throw FlattenError("writing \(temporaryPath): \(error)")
        }
    }

    /// Sets the final length, syncs and renames the file into place.
    func commit(size: UInt64) throws {
        try flush()
        do {
            try descriptor.resize(to: Int64(size))
            guard fsync(descriptor.rawValue) == 0 else { throw Errno(rawValue: errno) }
            try descriptor.close()
        } catch {
            throw FlattenError("finishing \(temporaryPath): \(error)")
        }
        guard rename(temporaryPath, destination) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporaryPath)
            committed = true
            throw FlattenError("cannot rename \(temporaryPath) to \(destination): \(reason)")
        }
        committed = true
    }
}
