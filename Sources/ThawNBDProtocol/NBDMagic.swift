/// The fixed numbers that open each NBD message, as `doc/proto.md` of the NBD project defines them.
///
/// A peer that sends anything else is not speaking NBD, or has lost its place in the stream; the
/// server never tries to resynchronise and closes the connection instead.
public enum NBDMagic {
    /// "NBDMAGIC", the first eight bytes the server sends.
    public static let initial: UInt64 = 0x4e42_444d_4147_4943
    /// "IHAVEOPT": the second eight bytes of the newstyle greeting and the start of every option.
    public static let option: UInt64 = 0x4948_4156_454f_5054
    /// Starts every reply to an option in fixed newstyle negotiation.
    public static let optionReply: UInt64 = 0x0003_e889_0455_65a9
    /// Starts every transmission-phase request.
    public static let request: UInt32 = 0x2560_9513
    /// Starts every simple reply.
    public static let simpleReply: UInt32 = 0x6744_6698
}
