/// Writes a POSIX tar archive in memory, using pax extended headers whenever a field does not fit
/// ustar (long paths, large sizes or ids, nanosecond times, extended attributes).
///
/// Thaw uses it to generate sample images; it is deterministic (no clock, fixed field order).
public struct TarWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    /// Appends one member; `data` is the content of a regular file.
    public mutating func append(_ entry: TarEntry, data: [UInt8] = []) {
        precondition(entry.kind == .regular || data.isEmpty, "only regular files carry data")
        var records: [(String, [UInt8])] = []
        if entry.path.count > 100 { records.append(("path", entry.path)) }
        if entry.linkName.count > 100 { records.append(("linkpath", entry.linkName)) }
        if entry.size > 0o77777777777 { records.append(("size", Array(String(entry.size).utf8))) }
        if entry.uid > 0o7777777 { records.append(("uid", Array(String(entry.uid).utf8))) }
        if entry.gid > 0o7777777 { records.append(("gid", Array(String(entry.gid).utf8))) }
        let time = entry.modificationTime
        if time.nanoseconds != 0 || time.seconds < 0 || time.seconds > 0o77777777777 {
            var text = String(time.seconds)
            if time.nanoseconds != 0 {
                var fraction = String(time.nanoseconds)
                while fraction.count < 9 { fraction = "0" + fraction }
                text += "." + fraction
            }
            records.append(("mtime", Array(text.utf8)))
        }
        for name in entry.extendedAttributes.keys.sorted() {
            records.append(("SCHILY.xattr." + name, entry.extendedAttributes[name]!))
        }
        if !records.isEmpty {
            var pax: [UInt8] = []
            for (key, value) in records { pax += Self.paxRecord(key: key, value: value) }
            var paxName = Array("PaxHeaders/".utf8) + entry.path.suffix(80)
            if paxName.count > 100 { paxName = Array(paxName.prefix(100)) }
            appendHeader(name: paxName, typeflag: UInt8(ascii: "x"), size: UInt64(pax.count), entry: nil)
            appendData(pax)
        }
        let typeflag: UInt8
        switch entry.kind {
        case .regular: typeflag = UInt8(ascii: "0")
        case .hardLink: typeflag = UInt8(ascii: "1")
        case .symbolicLink: typeflag = UInt8(ascii: "2")
        case .characterDevice: typeflag = UInt8(ascii: "3")
        case .blockDevice: typeflag = UInt8(ascii: "4")
        case .directory: typeflag = UInt8(ascii: "5")
        case .fifo: typeflag = UInt8(ascii: "6")
        }
        appendHeader(name: Array(entry.path.prefix(100)), typeflag: typeflag,
                     size: entry.kind == .regular ? UInt64(data.count) : 0, entry: entry)
        appendData(data)
    }

    /// Appends the two zero blocks that end an archive.
    public mutating func finish() {
        bytes += [UInt8](repeating: 0, count: 1024)
    }

    private mutating func appendHeader(name: [UInt8], typeflag: UInt8, size: UInt64, entry: TarEntry?) {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ field: [UInt8], at offset: Int, width: Int) {
            for (i, b) in field.prefix(width).enumerated() { block[offset + i] = b }
        }
        func octal(_ value: UInt64, at offset: Int, width: Int) {
            let clamped = min(value, (UInt64(1) << (3 * UInt64(width - 1))) - 1)
            var text = String(clamped, radix: 8)
            while text.count < width - 1 { text = "0" + text }
            put(Array(text.utf8), at: offset, width: width - 1)
        }
        put(name, at: 0, width: 100)
        octal(UInt64(entry?.permissions ?? 0o644), at: 100, width: 8)
        octal(UInt64(entry?.uid ?? 0), at: 108, width: 8)
        octal(UInt64(entry?.gid ?? 0), at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(UInt64(max(0, entry?.modificationTime.seconds ?? 0)), at: 136, width: 12)
        block[156] = typeflag
        if let entry { put(Array(entry.linkName.prefix(100)), at: 157, width: 100) }
        put(Array("ustar\0".utf8), at: 257, width: 6)
        put(Array("00".utf8), at: 263, width: 2)
        if let entry, entry.kind == .characterDevice || entry.kind == .blockDevice {
            octal(UInt64(entry.deviceMajor), at: 329, width: 8)
            octal(UInt64(entry.deviceMinor), at: 337, width: 8)
        }
        for i in 148..<156 { block[i] = UInt8(ascii: " ") }
        let sum = block.reduce(0) { $0 + UInt64($1) }
        var text = String(sum, radix: 8)
        while text.count < 6 { text = "0" + text }
        put(Array(text.utf8) + [0, UInt8(ascii: " ")], at: 148, width: 8)
        bytes += block
    }

    private mutating func appendData(_ data: [UInt8]) {
        bytes += data
        let padding = (512 - data.count % 512) % 512
        bytes += [UInt8](repeating: 0, count: padding)
    }

    /// One `"%d key=value\n"` record; the length counts its own digits.
    static func paxRecord(key: String, value: [UInt8]) -> [UInt8] {
        let body = Array(" \(key)=".utf8) + value + [UInt8(ascii: "\n")]
        var length = body.count + 1
        while String(length).utf8.count + body.count != length { length = String(length).utf8.count + body.count }
        return Array(String(length).utf8) + body
    }
}
