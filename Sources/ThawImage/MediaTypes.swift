/// Media types Thaw recognises, from the OCI image spec and Docker's image manifest v2 schema 2.
public enum MediaTypes {
    public static let ociManifest = "application/vnd.oci.image.manifest.v1+json"
    public static let ociIndex = "application/vnd.oci.image.index.v1+json"
    public static let ociConfig = "application/vnd.oci.image.config.v1+json"
    public static let dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
    public static let dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
    public static let dockerConfig = "application/vnd.docker.container.image.v1+json"

    public static let ociLayerTar = "application/vnd.oci.image.layer.v1.tar"
    public static let ociLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
    public static let ociLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd"

    static func isManifest(_ type: String) -> Bool { type == ociManifest || type == dockerManifest }
    static func isIndex(_ type: String) -> Bool { type == ociIndex || type == dockerManifestList }
}

/// How a layer blob is compressed.
public enum LayerCompression: String, Sendable, Hashable {
    case none
    case gzip
    case zstd

    /// The compression a layer media type implies, or `nil` for a type Thaw does not know.
    public init?(mediaType: String) {
        switch mediaType {
        case MediaTypes.ociLayerTar,
             "application/vnd.oci.image.layer.nondistributable.v1.tar",
             "application/vnd.docker.image.rootfs.diff.tar":
            self = .none
        case MediaTypes.ociLayerGzip,
             "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
             "application/vnd.docker.image.rootfs.diff.tar.gzip",
             "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip":
            self = .gzip
        case MediaTypes.ociLayerZstd,
             "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
             "application/vnd.docker.image.rootfs.diff.tar.zstd":
            self = .zstd
        default:
            return nil
        }
    }

    /// The compression a blob's first bytes show (docker archives carry no media types).
    public init(sniffing prefix: [UInt8]) {
        if prefix.count >= 2 && prefix[0] == 0x1f && prefix[1] == 0x8b { self = .gzip }
        else if prefix.count >= 4 && prefix[0] == 0x28 && prefix[1] == 0xb5 && prefix[2] == 0x2f && prefix[3] == 0xfd { self = .zstd }
        else { self = .none }
    }
}
