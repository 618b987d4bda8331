/// Where a read's bytes go as they are decrypted: a byte array, or a server's reply buffer, so
/// the plaintext is copied once, from the decryption straight to where it is sent.
public protocol ReadSink {
    mutating func append(_ bytes: UnsafeRawBufferPointer)
    mutating func appendZeros(_ count: Int)
}

extension Array: ReadSink where Element == UInt8 {
    public mutating func append(_ bytes: UnsafeRawBufferPointer) { append(contentsOf: bytes) }
    public mutating func appendZeros(_ count: Int) { append(contentsOf: repeatElement(0, count: count)) }
}
