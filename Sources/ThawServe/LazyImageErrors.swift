public import ThawSeal
public import ThawStore

/// A read that reaches past the end of the image.
public struct ReadOutOfRangeError: Error, Sendable, CustomStringConvertible {
    public var offset: UInt64
    public var length: Int
    public var imageSize: UInt64

    public var description: String {
        "read of \(length) bytes at offset \(offset) is outside the image of \(imageSize) bytes"
    }
}

/// A read that could not get a chunk within the deadline. The fetch may still finish and fill
/// the cache; only this read gave up.
public struct ChunkDeadlineError: Error, Sendable, CustomStringConvertible {
    public var chunkIndex: Int
    public var chunk: ChunkName
    public var store: String
    public var deadline: Duration

    public var description: String {
        "chunk \(chunkIndex) (\(chunk)) from \(store) did not arrive within \(deadline)"
    }
}

/// An origin fetch that failed: the chunk is missing, corrupt (its bytes do not hash to its
/// name) or the store could not be read. Nothing is cached, so the next read tries again.
public struct ChunkFetchError: Error, Sendable, CustomStringConvertible {
    public var chunkIndex: Int
    public var chunk: ChunkName
    public var store: String
    /// The store's classification when the store raised the error.
    public var kind: StoreError.Kind?
    public var reason: String

    public var description: String {
        "chunk \(chunkIndex) (\(chunk)) from \(store) cannot be read: \(reason)"
    }
}
