/// Why a chunk could not be coded or rebuilt, with what was wrong.
public struct ErasureError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// k and m are outside what the code supports.
        case invalidParameters
        /// Shards of different lengths, a shard index out of range, or the wrong number of shards.
        case invalidShards
        /// Fewer than k shards are available.
        case notEnoughShards
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
