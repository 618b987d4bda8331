import SystemPackage
public import ThawTar

/// Reads a byte range of a file with `pread(2)`, so many sources can share one archive file.
public final class FileSource: ByteSource {
    private let descriptor: FileDescriptor
    private var position: UInt64
    private let end: UInt64
    public let path: String

    /// Opens `path` for reading `length` bytes from `offset` (to the end of the file when nil).
    public init(path: String, offset: UInt64 = 0, length: UInt64? = nil) throws {
        do {
            descriptor = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
        } catch {
            throw ImageError(.notFound, "cannot open \(path): \(error)")
        }
        self.path = path
        position = offset
        if let length {
            end = offset + length
        } else {
            let size = try descriptor.seek(offset: 0, from: .end)
            end = UInt64(size)
        }
    }

    deinit { try? descriptor.close() }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let want = Int(min(UInt64(buffer.count), end - min(end, position)))
        if want == 0 { return 0 }
        let n: Int
        do {
            n = try descriptor.read(fromAbsoluteOffset: Int64(position), into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]))
        } catch {
            throw ImageError(.io, "reading \(path) at \(position): \(error)")
        }
        position += UInt64(n)
        return n
    }

    /// Reads a whole small file (a manifest, a config), refusing anything over `limit` bytes.
    /// The buffer is sized by the file, not by the limit: a push reads several small files
    /// before it starts, and zeroing 16 MiB for each cost more than the rest of opening an image.
    public static func readAll(path: String, limit: Int = 16 << 20) throws -> [UInt8] {
        let source = try FileSource(path: path)
        // A file over the limit fills one byte past it, which the check below refuses.
        let size = Int(min(UInt64(limit), source.end - min(source.end, source.position))) + 1
        var bytes = [UInt8](repeating: 0, count: size)
        let n = try bytes.withUnsafeMutableBytes { try source.readFully(into: $0) }
        guard n <= limit else { throw ImageError(.invalidImage, "\(path) is larger than \(limit) bytes") }
        bytes.removeSubrange(n...)
        return bytes
    }
}
