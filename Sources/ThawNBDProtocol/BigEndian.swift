/// NBD is big-endian on the wire (unlike Thaw's own formats, which `ThawBinary` writes
/// little-endian), so it has its own small helpers.
extension Array where Element == UInt8 {
    mutating func appendBigEndian(_ value: UInt64) { appendBigEndian(value, width: 8) }
    mutating func appendBigEndian(_ value: UInt32) { appendBigEndian(UInt64(value), width: 4) }
    mutating func appendBigEndian(_ value: UInt16) { appendBigEndian(UInt64(value), width: 2) }

    private mutating func appendBigEndian(_ value: UInt64, width: Int) {
        for shift in stride(from: 8 * (width - 1), through: 0, by: -8) {
            append(UInt8(truncatingIfNeeded: value >> UInt64(shift)))
        }
    }
}

extension Collection where Element == UInt8 {
    /// The big-endian number in the `width` bytes at `offset` from the start; the caller has
    /// checked they are there.
    func bigEndian(at offset: Int, width: Int) -> UInt64 {
        var value: UInt64 = 0
        var index = self.index(startIndex, offsetBy: offset)
        for _ in 0..<width {
            value = value << 8 | UInt64(self[index])
            formIndex(after: &index)
        }
        return value
    }
}
