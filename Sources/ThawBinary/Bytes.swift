/// Little-endian field writer for Thaw's binary formats (manifests, layer records, indexes).
public struct ByteWriter: Sendable {
    public var bytes: [UInt8] = []

    public init() {}

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { append(UInt64(v), 2) }
    public mutating func u32(_ v: UInt32) { append(UInt64(v), 4) }
    public mutating func u64(_ v: UInt64) { append(v, 8) }
    public mutating func i64(_ v: Int64) { append(UInt64(bitPattern: v), 8) }
    public mutating func raw(_ v: some Sequence<UInt8>) { bytes.append(contentsOf: v) }

    /// A string of at most 255 UTF-8 bytes, length first.
    public mutating func shortString(_ s: String) {
        let utf8 = Array(s.utf8)
        precondition(utf8.count <= 255, "short strings hold at most 255 bytes")
        u8(UInt8(utf8.count))
        raw(utf8)
    }

    /// Bytes of any length, a 32-bit length first.
    public mutating func blob(_ v: [UInt8]) {
        u32(UInt32(v.count))
        raw(v)
    }

    private mutating func append(_ v: UInt64, _ width: Int) {
        for i in 0..<width { bytes.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) }
    }
}

/// Input ended before a field: which document, which field, where.
public struct TruncatedInput: Error, Sendable, CustomStringConvertible {
    public var what: String
    public var field: String
    public var offset: Int
    public var needed: Int
    public var remaining: Int

    public var description: String {
        "\(what) is truncated: \(field) needs \(needed) bytes at offset \(offset), \(remaining) remain"
    }
}

/// Little-endian field reader that reports truncation with what was being read and where.
public struct ByteReader: Sendable {
    public let bytes: [UInt8]
    public private(set) var offset: Int
    /// The document being read, for messages.
    public let what: String

    public init(_ bytes: [UInt8], offset: Int = 0, what: String) {
        self.bytes = bytes
        self.offset = offset
        self.what = what
    }

    public var remaining: Int { bytes.count - offset }

    public mutating func take(_ count: Int, _ field: String) throws(TruncatedInput) -> ArraySlice<UInt8> {
        guard count >= 0, remaining >= count else {
            throw TruncatedInput(what: what, field: field, offset: offset, needed: count, remaining: max(remaining, 0))
        }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    public mutating func u8(_ field: String) throws(TruncatedInput) -> UInt8 { try take(1, field).first! }
    public mutating func u16(_ field: String) throws(TruncatedInput) -> UInt16 { UInt16(try int(2, field)) }
    public mutating func u32(_ field: String) throws(TruncatedInput) -> UInt32 { UInt32(try int(4, field)) }
    public mutating func u64(_ field: String) throws(TruncatedInput) -> UInt64 { try int(8, field) }
    public mutating func i64(_ field: String) throws(TruncatedInput) -> Int64 { Int64(bitPattern: try int(8, field)) }
    public mutating func raw(_ count: Int, _ field: String) throws(TruncatedInput) -> [UInt8] { Array(try take(count, field)) }

    public mutating func shortString(_ field: String) throws(TruncatedInput) -> String {
        let length = Int(try u8(field + " length"))
        return String(decoding: try take(length, field), as: UTF8.self)
    }

    public mutating func blob(_ field: String) throws(TruncatedInput) -> [UInt8] {
        let length = Int(try u32(field + " length"))
        return try raw(length, field)
    }

    private mutating func int(_ width: Int, _ field: String) throws(TruncatedInput) -> UInt64 {
        var v: UInt64 = 0
        for (i, b) in try take(width, field).enumerated() { v |= UInt64(b) << (8 * UInt64(i)) }
        return v
    }
}
