/// A page stored as the difference from a similar base page: copies of runs of the base and
/// literal bytes, in order, that rebuild the page exactly.
///
/// The format (also in docs/memory-snapshots.md):
///
///     patch   = version:u8 (1)  target-length:varint  operation*
///     copy    = 0x00  offset:varint  length:varint      bytes offset..<offset+length of the base
///     literal = 0x01  length:varint  byte[length]       the bytes themselves
///
/// Varints are unsigned LEB128. Lengths are at least 1, the operations' lengths add up to the
/// target length exactly, and nothing follows the last operation.
///
/// The encoder is greedy: at each position it tries the base at the same offset, at the offset
/// of the previous copy (content shifted by a few bytes stays shifted) and at the last base
/// position with the same 8 bytes, and copies the longest run of at least `minimumCopy` bytes.
/// Hand-written: no package here offers a binary delta codec (xdelta and bsdiff are C tools for
/// files, not a library for 4 KiB pages).
public enum PagePatch {
    public static let version: UInt8 = 1
    /// The longest target a patch may describe: a page is 4 KiB; a patch claiming more than a
    /// mebibyte is hostile.
    public static let maximumLength = 1 << 20
    /// Shorter runs cost more as a copy (1 + 2 + 1 bytes) than as literal bytes.
    static let minimumCopy = 6
    static let copyOperation: UInt8 = 0
    static let literalOperation: UInt8 = 1

    /// The patch that rebuilds `target` from `base`.
    public static func encode(_ target: [UInt8], against base: [UInt8]) -> [UInt8] {
        precondition(target.count <= maximumLength, "a patch target is at most \(maximumLength) bytes")
        var out: [UInt8] = [version]
        appendVarint(UInt64(target.count), to: &out)
        let grams = GramTable(base)
        var position = 0, literalStart = 0
        var delta = 0  // base offset minus target offset of the last copy
        while position < target.count {
            var best = (offset: 0, length: 0)
            for attempt in 0..<3 {
                let candidate = switch attempt {
                case 0: position + delta
                case 1: position
                default: grams.lookup(target, at: position) ?? -1
                }
                guard candidate >= 0, candidate < base.count, attempt != 1 || delta != 0 else { continue }
                let length = matchLength(base, candidate, target, position)
                if length > best.length { best = (candidate, length) }
            }
            guard best.length >= minimumCopy else {
                position += 1
                continue
            }
            appendLiteral(target[literalStart..<position], to: &out)
            out.append(copyOperation)
            appendVarint(UInt64(best.offset), to: &out)
            appendVarint(UInt64(best.length), to: &out)
            delta = best.offset - position
            position += best.length
            literalStart = position
        }
        appendLiteral(target[literalStart..<position], to: &out)
        return out
    }

    /// The patch that rebuilds `target` from `base`, or nil when it is longer than `limit`
    /// bytes (the page is then better stored whole).
    public static func encode(_ target: [UInt8], against base: [UInt8], limit: Int) -> [UInt8]? {
        let patch = encode(target, against: base)
        return patch.count <= limit ? patch : nil
    }

    /// Rebuilds the target from `patch` and `base`.
    ///
    /// - Throws: `PatchError` naming what is wrong and where, for any patch this encoder could
    ///   not have written against `base`; it never returns bytes that do not follow the format.
    public static func apply(_ patch: [UInt8], to base: [UInt8]) throws(PatchError) -> [UInt8] {
        var reader = PatchReader(patch)
        let found = try reader.byte("version")
        guard found == version else {
            throw PatchError(.unsupportedVersion, "patch version \(found) is not supported (this reader knows \(version))")
        }
        let declared = try reader.varint("target length")
        guard declared <= UInt64(maximumLength) else {
            throw PatchError(.malformed, "the patch declares a target of \(declared) bytes, more than \(maximumLength)")
        }
        let length = Int(declared)
        var out: [UInt8] = []
        out.reserveCapacity(length)
        while reader.remaining > 0 {
            let at = reader.offset
            let operation = try reader.byte("operation")
            switch operation {
            case copyOperation:
                let offset = try reader.varint("copy offset"), count = try reader.varint("copy length")
                guard count > 0, count <= UInt64(length - out.count) else {
                    throw PatchError(.malformed, "the copy at byte \(at) of the patch has length \(count), but \(length - out.count) bytes of the target are left")
                }
                guard offset <= UInt64(base.count), count <= UInt64(base.count) - offset else {
                    throw PatchError(.malformed, "the copy at byte \(at) of the patch reads \(count) bytes at \(offset), past the base page's \(base.count) bytes")
                }
                out += base[Int(offset)..<Int(offset + count)]
            case literalOperation:
                let count = try reader.varint("literal length")
                guard count > 0, count <= UInt64(length - out.count) else {
                    throw PatchError(.malformed, "the literal at byte \(at) of the patch has length \(count), but \(length - out.count) bytes of the target are left")
                }
                out += try reader.bytes(Int(count), "literal bytes")
            default:
                throw PatchError(.malformed, "unknown operation \(operation) at byte \(at) of the patch")
            }
        }
        guard out.count == length else {
            throw PatchError(.truncated, "the patch ends after \(out.count) of its \(length) target bytes")
        }
        return out
    }

    static func matchLength(_ base: [UInt8], _ baseOffset: Int, _ target: [UInt8], _ targetOffset: Int) -> Int {
        let limit = min(base.count - baseOffset, target.count - targetOffset)
        var length = 0
        while length < limit, base[baseOffset + length] == target[targetOffset + length] { length += 1 }
        return length
    }

    static func appendLiteral(_ bytes: ArraySlice<UInt8>, to out: inout [UInt8]) {
        guard !bytes.isEmpty else { return }
        out.append(literalOperation)
        appendVarint(UInt64(bytes.count), to: &out)
        out += bytes
    }

    static func appendVarint(_ value: UInt64, to out: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        out.append(UInt8(value))
    }
}

extension PagePatch {
    /// The shortest patch of `page`, at most `limit` bytes, against the candidate base pages
    /// (`base` gives each one's bytes, nil when it has none), with the candidate it is against;
    /// nil when no candidate gives one. Each candidate is encoded with the best length so far
    /// as its limit, so a poor one stops early.
    static func shortest<Location>(for page: [UInt8], among candidates: [Location], limit: Int,
                                   base: (Location) -> [UInt8]?) -> (Location, [UInt8])? {
        var best: (Location, [UInt8])?
        for location in candidates {
            guard let bytes = base(location),
                  let patch = encode(page, against: bytes, limit: min(limit, best?.1.count ?? .max)) else { continue }
            best = (location, patch)
        }
        return best
    }
}

/// Why a patch could not be applied.
public struct PatchError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case unsupportedVersion, truncated, malformed }
    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// The last base position of each 8-byte value, in a table indexed by a hash of the value
/// (a later position with the same slot replaces an earlier one; every hit is checked).
struct GramTable {
    static let gram = 8
    let slots: [Int32]
    let shift: UInt64

    init(_ base: [UInt8]) {
        var bits = 4
        while 1 << bits < 2 * base.count { bits += 1 }
        shift = UInt64(64 - bits)
        var slots = [Int32](repeating: -1, count: 1 << bits)
        if base.count >= Self.gram {
            for offset in 0...(base.count - Self.gram) {
                slots[Self.slot(Self.load(base, offset), shift)] = Int32(offset)
            }
        }
        self.slots = slots
    }

    func lookup(_ target: [UInt8], at offset: Int) -> Int? {
        guard offset + Self.gram <= target.count else { return nil }
        let found = slots[Self.slot(Self.load(target, offset), shift)]
        return found < 0 ? nil : Int(found)
    }

    static func load(_ bytes: [UInt8], _ offset: Int) -> UInt64 {
        var value: UInt64 = 0
        for index in 0..<gram { value |= UInt64(bytes[offset + index]) << (8 * index) }
        return value
    }

    static func slot(_ value: UInt64, _ shift: UInt64) -> Int { Int(truncatingIfNeeded: (value &* 0x9e37_79b9_7f4a_7c15) >> shift) }
}

/// Reads a patch (or a chunk delta), throwing `PatchError(.truncated)` past its end.
struct PatchReader {
    let bytes: [UInt8]
    /// What is read, for messages: "patch" or "chunk delta".
    let what: String
    private(set) var offset = 0

    init(_ bytes: [UInt8], what: String = "patch") {
        self.bytes = bytes
        self.what = what
    }

    var remaining: Int { bytes.count - offset }

    mutating func byte(_ field: String) throws(PatchError) -> UInt8 {
        guard offset < bytes.count else { throw PatchError(.truncated, "the \(what) ends before its \(field) (at byte \(offset))") }
        offset += 1
        return bytes[offset - 1]
    }

    mutating func bytes(_ count: Int, _ field: String) throws(PatchError) -> ArraySlice<UInt8> {
        guard count <= remaining else {
            throw PatchError(.truncated, "the \(what) ends \(count - remaining) bytes into its \(field) (at byte \(offset))")
        }
        offset += count
        return bytes[(offset - count)..<offset]
    }

    mutating func varint(_ field: String) throws(PatchError) -> UInt64 {
        let start = offset
        var value: UInt64 = 0
        for shift in stride(from: 0, to: 64, by: 7) {
            let byte = try self.byte(field)
            let bits = UInt64(byte & 0x7f)
            guard shift < 63 || bits <= 1 else { break }
            value |= bits << UInt64(shift)
            if byte & 0x80 == 0 { return value }
        }
        throw PatchError(.malformed, "the \(field) at byte \(start) of the \(what) is not a 64-bit varint")
    }
}
