/// Why sealing, opening or verifying failed, with the object it concerns.
public struct SealError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A manifest's bytes do not parse: truncated, bad magic, inconsistent counts.
        case malformedManifest
        /// A manifest of a format version this build does not read.
        case unsupportedVersion
        /// The tenant key cannot unwrap the manifest's data key: a different key wrapped it.
        case wrongKey
        /// Authentication failed: the manifest or a sealed object was changed after sealing.
        case tampered
        /// Bytes do not hash to the chunk name they were stored under.
        case chunkMismatch
        /// A tenant key is missing, unreadable or malformed.
        case key
        /// A value (name, salt, root) is not well formed.
        case invalidValue
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
