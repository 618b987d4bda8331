/// What an NBD client sends, built byte by byte for the raw-connection tests.
enum ClientMessages {
    static func be(_ value: UInt64, _ width: Int) -> [UInt8] {
        (0..<width).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }

    static let greeting = Array("NBDMAGIC".utf8) + Array("IHAVEOPT".utf8) + [0x00, 0x03]

    /// Fixed newstyle and no zeroes.
    static let flags: [UInt8] = [0, 0, 0, 3]

    static func option(_ option: UInt32, _ data: [UInt8] = []) -> [UInt8] {
        Array("IHAVEOPT".utf8) + be(UInt64(option), 4) + be(UInt64(data.count), 4) + data
    }

    static func go(_ name: String) -> [UInt8] {
        option(7, be(UInt64(name.utf8.count), 4) + Array(name.utf8) + [0, 0])
    }

    static func request(_ type: UInt16, cookie: UInt64, offset: UInt64 = 0, length: UInt32 = 0) -> [UInt8] {
        [0x25, 0x60, 0x95, 0x13, 0, 0] + be(UInt64(type), 2) + be(cookie, 8) + be(offset, 8) + be(UInt64(length), 4)
    }

    /// The length of the server's reply to NBD_OPT_GO: NBD_INFO_EXPORT, NBD_INFO_BLOCK_SIZE, ACK.
    static let goReplyLength = (20 + 12) + (20 + 14) + 20
}
