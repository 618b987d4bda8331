/// Where a read's bytes go as they are decrypted: a byte array, or a server's reply buffer, so
/// the plaintext is copied once, from the decryption straight to where it is sent.
public protocol ReadSink {
    mutating func append(_ bytes: UnsafeRawBufferPointer)
    mutating func appendZeros(_ count: Int)
    /// Appends `count` bytes that `fill` writes in place (a decryption).
    mutating func append(count: Int, filledBy fill: (UnsafeMutableRawBufferPointer) -> Void)
}

extension Array: ReadSink where Element == UInt8 {
    public mutating func append(_ bytes: UnsafeRawBufferPointer) { append(contentsOf: bytes) }
    public mutating func appendZeros(_ count: Int) { append(contentsOf: repeatElement(0, count: count)) }
    public mutating func append(count: Int, filledBy fill: (UnsafeMutableRawBufferPointer) -> Void) {
        let start = self.count
        append(contentsOf: repeatElement(0, count: count))
        withUnsafeMutableBytes { fill(UnsafeMutableRawBufferPointer(rebasing: $0[start...])) }
    }
}
