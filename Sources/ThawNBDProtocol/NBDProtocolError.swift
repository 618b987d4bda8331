/// A client broke the protocol or a limit badly enough that the connection must close.
///
/// Mistakes the protocol lets the server answer (an unknown option, an unknown export asked for
/// with `NBD_OPT_GO`, a read past the end) are replies, not errors; these are the ones with no
/// reply that keeps both sides in step.
public struct NBDProtocolError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// The client flags lack fixed newstyle or set bits the server did not offer.
        case unsupportedClientFlags
        /// An option did not start with "IHAVEOPT".
        case badOptionMagic
        /// An option carried more data than `NBDLimits.maxOptionData`.
        case optionTooLarge
        /// An export name was longer than `NBDLimits.maxExportNameLength`.
        case exportNameTooLong
        /// `NBD_OPT_EXPORT_NAME` named an export that is not valid UTF-8 or does not exist;
        /// that option has no error reply, so the protocol says to close.
        case exportRefused
        /// More than `NBDLimits.maxOptions` options before transmission.
        case tooManyOptions
        /// A request did not start with the request magic.
        case badRequestMagic
        /// A write's payload is larger than `NBDLimits.maxPayload`, too large to skip.
        case payloadTooLarge
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
