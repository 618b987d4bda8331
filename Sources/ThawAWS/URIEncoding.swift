import ThawBinary
/// Percent-encoding exactly as Signature Version 4 defines it.
///
/// Only RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`) stay as they are; every other
/// byte of the UTF-8 form becomes `%XX` with uppercase hex digits. Foundation's encoders leave
/// more characters alone (`$`, `+`, `!`, `*` …), and a single such character changes the
/// signature, so they cannot be used here.
public enum URIEncoding {
    static func isUnreserved(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
             UInt8(ascii: "0")...UInt8(ascii: "9"),
             UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
            true
        default:
            false
        }
    }

    /// Encodes every byte that is not unreserved.
    public static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var encoded: [UInt8] = []
        for byte in bytes {
            if isUnreserved(byte) {
                encoded.append(byte)
            } else {
                encoded.append(UInt8(ascii: "%"))
                encoded.append(uppercaseHexDigits[Int(byte >> 4)])
                encoded.append(uppercaseHexDigits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: encoded, as: UTF8.self)
    }

    static func encode(_ text: some StringProtocol) -> String {
        encode(text.utf8)
    }

    /// Decodes `%XX` escapes.
    ///
    /// A `%` that is not followed by two hex digits is kept as a literal percent sign rather than
    /// rejected: a raw path such as `/100%` was never escaped, and it must still be signable.
    /// A `+` stays a plus sign, because RFC 3986 gives it no meaning in paths or queries.
    static func decode(_ text: some StringProtocol) -> [UInt8] {
        let bytes = Array(text.utf8)
        var decoded: [UInt8] = []
        decoded.reserveCapacity(bytes.count)
        var index = 0
        while index < bytes.count {
            if bytes[index] == UInt8(ascii: "%"), index + 2 < bytes.count,
               let high = Hex.digitValue(bytes[index + 1]), let low = Hex.digitValue(bytes[index + 2]) {
                decoded.append(high << 4 | low)
                index += 3
            } else {
                decoded.append(bytes[index])
                index += 1
            }
        }
        return decoded
    }

    /// The canonical form of a component that may or may not be escaped already: escapes are
    /// decoded first, so `a%20b` and `a b` both become `a%20b`, and `%2b` becomes `%2B`.
    static func reencode(_ text: some StringProtocol) -> String {
        encode(decode(text))
    }

    private static let uppercaseHexDigits = Array("0123456789ABCDEF".utf8)
}
