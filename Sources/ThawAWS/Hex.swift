/// Lowercase hex, the form SigV4 uses for hashes and signatures.
enum Hex {
    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var text = ""
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return text
    }

    private static let digits = Array("0123456789abcdef")
}
