/// Reads a tar archive as a stream of entries, without holding more than one header in memory.
///
/// Understands POSIX ustar, pax extended headers (local `x` and global `g`), and GNU long names
/// and link names (`L`, `K`). Call ``nextEntry()`` for each member and, for regular files,
/// ``readData(into:)`` for its content; unread content is skipped by the next ``nextEntry()``.
public final class TarReader {
    /// Upper bound for a pax header or GNU long name: far above any real path or xattr set.
    public static let maximumExtensionSize: UInt64 = 16 << 20

    private let source: any ByteSource
    private let header = UnsafeMutableRawBufferPointer.allocate(byteCount: TarHeader.blockSize, alignment: 16)
    private var globalRecords: [(key: String, value: [UInt8])] = []
    private var remainingData: UInt64 = 0
    private var remainingPadding: Int = 0
    private var current: TarEntry?
    private var finished = false

    /// Bytes consumed from the source so far; at a member's data this is where its content starts.
    public private(set) var offset: UInt64 = 0

    public init(source: any ByteSource) {
        self.source = source
    }

    deinit { header.deallocate() }

    /// The next member, or `nil` at the end of the archive.
    ///
    /// - Throws: `TarError` for a truncated stream, a bad header or an unsupported member.
    public func nextEntry() throws -> TarEntry? {
        if finished { return nil }
        try skipRest()
        var localRecords: [(key: String, value: [UInt8])] = []
        var longName: [UInt8]?
        var longLink: [UInt8]?

        while true {
            let n = try source.readFully(into: header)
            offset += UInt64(n)
            if n == 0 {
                // End of stream without the two zero blocks: accept at a member boundary.
                finished = true
                return nil
            }
            guard n == TarHeader.blockSize else {
                throw TarError(.truncated, "stream ends inside a header at offset \(offset)", entry: current?.displayPath)
            }
            if TarHeader.isZeroBlock(UnsafeRawBufferPointer(header)) {
                finished = true
                return nil
            }
            let parsed = try TarHeader.parse(UnsafeRawBufferPointer(header))
            let display = String(decoding: longName ?? parsed.fullName, as: UTF8.self)

            switch parsed.typeflag {
            case UInt8(ascii: "x"), UInt8(ascii: "g"):
                let data = try readExtension(size: parsed.size, what: "pax header", entry: display)
                let records = try PaxRecords.parse(data, entry: display)
                if parsed.typeflag == UInt8(ascii: "g") { globalRecords = merge(globalRecords, records) }
                else { localRecords = merge(localRecords, records) }
                continue
            case UInt8(ascii: "L"):
                longName = try trimNul(readExtension(size: parsed.size, what: "GNU long name", entry: display))
                continue
            case UInt8(ascii: "K"):
                longLink = try trimNul(readExtension(size: parsed.size, what: "GNU long link name", entry: display))
                continue
            default:
                break
            }

            var entry = try makeEntry(parsed, display: display)
            if let longName { entry.path = longName }
            if let longLink { entry.linkName = longLink }
            try apply(globalRecords, to: &entry)
            try apply(localRecords, to: &entry)
            // POSIX: no data records follow links, directories, devices or FIFOs.
            if entry.kind != .regular { entry.size = 0 }
            remainingData = entry.size
            remainingPadding = Int((TarHeader.blockSize - Int(remainingData % 512)) % 512)
            current = entry
            return entry
        }
    }

    /// Reads the current regular file's content.
    ///
    /// - Returns: bytes read, `0` at the end of the member's data.
    /// - Throws: `TarError.truncated` if the stream ends first.
    public func readData(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard remainingData > 0, buffer.count > 0 else { return 0 }
        let want = Int(min(UInt64(buffer.count), remainingData))
        let n = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]))
        guard n > 0 else {
            throw TarError(.truncated, "stream ends with \(remainingData) bytes of data still expected", entry: current?.displayPath)
        }
        remainingData -= UInt64(n)
        offset += UInt64(n)
        return n
    }

    /// Skips whatever is left of the current member and its padding.
    private func skipRest() throws {
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
        defer { scratch.deallocate() }
        while remainingData > 0 {
            _ = try readData(into: scratch)
        }
        if remainingPadding > 0 {
            let pad = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<remainingPadding])
            let n = try source.readFully(into: pad)
            offset += UInt64(n)
            // A stream may end right after the last member's data, without padding: only complain
            // if padding was cut partway.
            if n != remainingPadding && n != 0 {
                throw TarError(.truncated, "stream ends inside padding", entry: current?.displayPath)
            }
            remainingPadding = 0
        }
    }

    private func readExtension(size: UInt64, what: String, entry: String) throws -> [UInt8] {
        guard size <= Self.maximumExtensionSize else {
            throw TarError(.tooLarge, "\(what) of \(size) bytes exceeds \(Self.maximumExtensionSize)", entry: entry)
        }
        var data = [UInt8](repeating: 0, count: Int(size))
        let n = try data.withUnsafeMutableBytes { try source.readFully(into: $0) }
        offset += UInt64(n)
        guard n == Int(size) else {
            throw TarError(.truncated, "stream ends inside a \(what)", entry: entry)
        }
        let padding = (TarHeader.blockSize - Int(size % 512)) % 512
        if padding > 0 {
            var pad = [UInt8](repeating: 0, count: padding)
            let p = try pad.withUnsafeMutableBytes { try source.readFully(into: $0) }
            offset += UInt64(p)
            guard p == padding else { throw TarError(.truncated, "stream ends inside a \(what)", entry: entry) }
        }
        return data
    }

    private func trimNul(_ bytes: [UInt8]) -> [UInt8] {
        if let end = bytes.firstIndex(of: 0) { return Array(bytes[..<end]) }
        return bytes
    }

    private func merge(
        _ base: [(key: String, value: [UInt8])], _ new: [(key: String, value: [UInt8])]
    ) -> [(key: String, value: [UInt8])] {
        var result = base
        for record in new {
            result.removeAll { $0.key == record.key }
            result.append(record)
        }
        return result
    }

    private func makeEntry(_ header: TarHeader, display: String) throws -> TarEntry {
        let kind: TarEntry.Kind
        switch header.typeflag {
        case UInt8(ascii: "0"), 0, UInt8(ascii: "7"): kind = .regular
        case UInt8(ascii: "1"): kind = .hardLink
        case UInt8(ascii: "2"): kind = .symbolicLink
        case UInt8(ascii: "3"): kind = .characterDevice
        case UInt8(ascii: "4"): kind = .blockDevice
        case UInt8(ascii: "5"): kind = .directory
        case UInt8(ascii: "6"): kind = .fifo
        case UInt8(ascii: "S"):
            throw TarError(.unsupportedType, "GNU sparse files are not supported", entry: display)
        default:
            let flag = header.typeflag >= 0x20 && header.typeflag < 0x7f
                ? "'\(Character(Unicode.Scalar(header.typeflag)))'" : "0x\(String(header.typeflag, radix: 16))"
            throw TarError(.unsupportedType, "entry type \(flag) is not supported", entry: display)
        }
        guard header.uid <= UInt64(UInt32.max), header.gid <= UInt64(UInt32.max) else {
            throw TarError(.invalidField, "uid or gid does not fit in 32 bits", entry: display)
        }
        guard header.deviceMajor <= UInt64(UInt32.max), header.deviceMinor <= UInt64(UInt32.max) else {
            throw TarError(.invalidField, "device number does not fit in 32 bits", entry: display)
        }
        var path = header.fullName
        // Pre-POSIX (V7) archives mark directories only with a trailing slash on type NUL.
        var resolvedKind = kind
        if header.typeflag == 0 && path.last == UInt8(ascii: "/") {
            resolvedKind = .directory
        }
        if resolvedKind == .directory { while path.count > 1 && path.last == UInt8(ascii: "/") { path.removeLast() } }
        return TarEntry(
            kind: resolvedKind,
            path: path,
            linkName: header.linkName,
            permissions: UInt16(header.mode & 0o7777),
            uid: UInt32(header.uid),
            gid: UInt32(header.gid),
            size: header.size,
            modificationTime: Timestamp(seconds: header.mtime),
            deviceMajor: UInt32(header.deviceMajor),
            deviceMinor: UInt32(header.deviceMinor)
        )
    }

    private func apply(_ records: [(key: String, value: [UInt8])], to entry: inout TarEntry) throws {
        let display = entry.displayPath
        for (key, value) in records {
            switch key {
            case "path":
                entry.path = value
                if entry.kind == .directory { while entry.path.count > 1 && entry.path.last == UInt8(ascii: "/") { entry.path.removeLast() } }
            case "linkpath": entry.linkName = value
            case "size": entry.size = try PaxRecords.parseNumber(value, key: key, entry: display)
            case "uid":
                let uid = try PaxRecords.parseNumber(value, key: key, entry: display)
                guard uid <= UInt64(UInt32.max) else { throw TarError(.invalidField, "uid \(uid) does not fit in 32 bits", entry: display) }
                entry.uid = UInt32(uid)
            case "gid":
                let gid = try PaxRecords.parseNumber(value, key: key, entry: display)
                guard gid <= UInt64(UInt32.max) else { throw TarError(.invalidField, "gid \(gid) does not fit in 32 bits", entry: display) }
                entry.gid = UInt32(gid)
            case "mtime": entry.modificationTime = try PaxRecords.parseTime(value, entry: display)
            case _ where key.hasPrefix("SCHILY.xattr."):
                entry.extendedAttributes[String(key.dropFirst("SCHILY.xattr.".count))] = value
            case _ where key.hasPrefix("GNU.sparse."):
                throw TarError(.unsupportedType, "GNU sparse files are not supported", entry: display)
            default:
                // atime, ctime, uname, gname, charset, comment, vendor records: not part of the image.
                break
            }
        }
    }
}
