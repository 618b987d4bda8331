/// Why a store operation failed, naming the store and the object.
public struct StoreError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The object is not in the store.
        case notFound
        /// The bytes read do not hash to the chunk's name.
        case corrupt
        /// The store refused the request (4xx other than not found): credentials, permissions, bucket.
        case rejected
        /// The store could not be reached or kept failing after retries (5xx, throttling, network).
        case unavailable
        /// A local file operation failed.
        case io
        /// The store location or an option is not valid.
        case invalidLocation
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
