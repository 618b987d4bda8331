/// One layer of an image: where its blob is, how it is compressed and what it must hash to.
public struct ImageLayer: Sendable, Hashable {
    /// Position in the stack, 0 for the base layer.
    public var index: Int
    /// Digest of the blob as stored (compressed), when the source records one.
    public var blobDigest: Digest?
    /// Size of the blob as stored, when the source records one.
    public var blobSize: Int64?
    /// Digest of the uncompressed tar, from the image config's `rootfs.diff_ids`.
    public var diffID: Digest
    public var compression: LayerCompression
    /// The file holding the blob and the byte range within it.
    public var path: String
    public var offset: UInt64
    public var length: UInt64

    /// "layer 2 (sha256:…)", as errors name it.
    public var label: String { "layer \(index + 1) (\(blobDigest ?? diffID))" }
}
