/// The simple reply (`doc/proto.md`, "Simple reply message"): a 16-byte header, followed for a
/// successful read by exactly the bytes asked for.
///
/// Structured replies are never negotiated, so every reply has this form. A read that fails
/// gets a header with an error and no data, which keeps the stream in step.
public enum NBDSimpleReply {
    public static let headerSize = 16

    /// The header: magic, error, cookie.
    public static func header(cookie: UInt64, error: NBDErrorCode = .none) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(headerSize)
        bytes.appendBigEndian(NBDMagic.simpleReply)
        bytes.appendBigEndian(error.rawValue)
        bytes.appendBigEndian(cookie)
        return bytes
    }

    /// A whole reply to a read: the header and the data.
    public static func read(cookie: UInt64, data: [UInt8]) -> [UInt8] {
        header(cookie: cookie) + data
    }
}
