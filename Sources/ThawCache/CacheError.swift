/// Why the cache could not be opened or could not store a chunk, naming the path or value.
public struct CacheError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A capacity, size or parameter is out of range.
        case invalidConfiguration
        /// A file operation on the disk tier failed.
        case io
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
