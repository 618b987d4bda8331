/// The fields of one 512-byte tar header block (POSIX ustar, with GNU's variations).
///
/// Layout from POSIX.1-2001 `pax` "ustar Interchange Format" and GNU tar's `tar.h`.
struct TarHeader {
    static let blockSize = 512

    var name: [UInt8]
    var mode: UInt64
    var uid: UInt64
    var gid: UInt64
    var size: UInt64
    var mtime: Int64
    var typeflag: UInt8
    var linkName: [UInt8]
    var isUstar: Bool
    var isGNU: Bool
    var deviceMajor: UInt64
    var deviceMinor: UInt64
    var prefix: [UInt8]

    /// The name with the ustar prefix joined on (GNU headers use that area for other things).
    var fullName: [UInt8] {
        if isUstar && !isGNU && !prefix.isEmpty { return prefix + [UInt8(ascii: "/")] + name }
        return name
    }

    /// True for the all-zero block that marks the end of an archive.
    static func isZeroBlock(_ block: UnsafeRawBufferPointer) -> Bool {
        block.allSatisfy { $0 == 0 }
    }

    /// Parses one header block.
    ///
    /// - Throws: `TarError` when the checksum or a numeric field is invalid.
    static func parse(_ block: UnsafeRawBufferPointer) throws -> TarHeader {
        precondition(block.count == blockSize)
        let name = cString(block, 0, 100)
        let display = String(decoding: name, as: UTF8.self)

        // Checksum: the sum of all bytes with the checksum field counted as spaces.
        // Old writers summed signed chars; accept either.
        let stored = try number(block, 148, 8, field: "checksum", entry: display)
        var unsignedSum: Int64 = 0
        var signedSum: Int64 = 0
        for i in 0..<blockSize {
            let byte = (148..<156).contains(i) ? UInt8(ascii: " ") : block[i]
            unsignedSum += Int64(byte)
            signedSum += Int64(Int8(bitPattern: byte))
        }
        guard Int64(stored) == unsignedSum || Int64(stored) == signedSum else {
            throw TarError(.badChecksum, "header checksum \(stored) does not match \(unsignedSum)", entry: display)
        }

        let magic = Array(block[257..<263])
        let isGNU = magic == Array("ustar ".utf8) && block[263] == UInt8(ascii: " ")
        let isUstar = magic == Array("ustar\0".utf8) || isGNU
        let mtimeRaw = try signedNumber(block, 136, 12, field: "mtime", entry: display)
        return TarHeader(
            name: name,
            mode: try number(block, 100, 8, field: "mode", entry: display),
            uid: try number(block, 108, 8, field: "uid", entry: display),
            gid: try number(block, 116, 8, field: "gid", entry: display),
            size: try number(block, 124, 12, field: "size", entry: display),
            mtime: mtimeRaw,
            typeflag: block[156],
            linkName: cString(block, 157, 100),
            isUstar: isUstar,
            isGNU: isGNU,
            deviceMajor: isUstar ? try number(block, 329, 8, field: "devmajor", entry: display) : 0,
            deviceMinor: isUstar ? try number(block, 337, 8, field: "devminor", entry: display) : 0,
            prefix: isUstar && !isGNU ? cString(block, 345, 155) : []
        )
    }

    /// The bytes of a NUL-terminated (or full-width) text field.
    static func cString(_ block: UnsafeRawBufferPointer, _ offset: Int, _ length: Int) -> [UInt8] {
        var end = offset
        while end < offset + length && block[end] != 0 { end += 1 }
        return Array(block[offset..<end])
    }

    /// A non-negative numeric field: octal text, or GNU base-256 when the high bit is set.
    static func number(
        _ block: UnsafeRawBufferPointer, _ offset: Int, _ length: Int, field: String, entry: String
    ) throws -> UInt64 {
        let value = try signedNumber(block, offset, length, field: field, entry: entry)
        guard value >= 0 else {
            throw TarError(.invalidField, "\(field) is negative (\(value))", entry: entry)
        }
        return UInt64(value)
    }

    static func signedNumber(
        _ block: UnsafeRawBufferPointer, _ offset: Int, _ length: Int, field: String, entry: String
    ) throws -> Int64 {
        let first = block[offset]
        if first & 0x80 != 0 {
            // Base-256, two's complement, big-endian; 0xff starts a negative number.
            let negative = first == 0xff
            var value: UInt64 = negative ? ~0 : 0
            for i in 0..<length {
                var byte = block[offset + i]
                if i == 0 && !negative { byte &= 0x7f }
                guard value >> 56 == (negative ? 0xff : 0) else {
                    throw TarError(.invalidField, "\(field) does not fit in 64 bits", entry: entry)
                }
                value = (value << 8) | UInt64(byte)
            }
            return Int64(bitPattern: value)
        }
        var value: Int64 = 0
        var index = offset
        let end = offset + length
        while index < end && (block[index] == UInt8(ascii: " ") || block[index] == 0) {
            if block[index] == 0 { return 0 }  // an empty field reads as zero
            index += 1
        }
        var digits = 0
        while index < end {
            let c = block[index]
            if c == 0 || c == UInt8(ascii: " ") { break }
            guard c >= UInt8(ascii: "0") && c <= UInt8(ascii: "7") else {
                let text = String(decoding: Self.cString(block, offset, length), as: UTF8.self)
                throw TarError(.invalidField, "\(field) field '\(text)' is not an octal number", entry: entry)
            }
            guard value < (Int64.max >> 3) else {
                throw TarError(.invalidField, "\(field) does not fit in 64 bits", entry: entry)
            }
            value = value * 8 + Int64(c - UInt8(ascii: "0"))
            digits += 1
            index += 1
        }
        // Anything after the terminator must be spaces or NULs.
        while index < end {
            let c = block[index]
            guard c == 0 || c == UInt8(ascii: " ") else {
                let text = String(decoding: Self.cString(block, offset, length), as: UTF8.self)
                throw TarError(.invalidField, "\(field) field '\(text)' is not an octal number", entry: entry)
            }
            index += 1
        }
        _ = digits
        return value
    }
}
