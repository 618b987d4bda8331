/// The JSON documents of the OCI image spec (and Docker's schema 2 equivalents) that Thaw reads.

/// A reference to a blob by media type, digest and size (OCI image-spec `descriptor.md`).
public struct Descriptor: Codable, Sendable, Hashable {
    public var mediaType: String
    public var digest: Digest
    public var size: Int64
    public var annotations: [String: String]?
    public var platform: Platform?

    public init(mediaType: String, digest: Digest, size: Int64, annotations: [String: String]? = nil, platform: Platform? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.annotations = annotations
        self.platform = platform
    }

    /// The tag an OCI layout's `index.json` gives this manifest.
    public var referenceName: String? { annotations?["org.opencontainers.image.ref.name"] }
}

/// An image manifest: the config blob and the ordered layers.
public struct ImageManifest: Codable, Sendable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var config: Descriptor
    public var layers: [Descriptor]

    public init(schemaVersion: Int = 2, mediaType: String? = MediaTypes.ociManifest, config: Descriptor, layers: [Descriptor]) {
        self.schemaVersion = schemaVersion
        self.mediaType = mediaType
        self.config = config
        self.layers = layers
    }
}

/// An image index (manifest list): manifests for several platforms, or an OCI layout's tags.
public struct ImageIndex: Codable, Sendable {
    public var schemaVersion: Int
    public var mediaType: String?
    public var manifests: [Descriptor]

    public init(schemaVersion: Int = 2, mediaType: String? = MediaTypes.ociIndex, manifests: [Descriptor]) {
        self.schemaVersion = schemaVersion
        self.mediaType = mediaType
        self.manifests = manifests
    }
}

/// The parts of an image configuration Thaw uses: platform, layer diff IDs, and how to run it.
public struct ImageConfiguration: Codable, Sendable {
    public struct RootFS: Codable, Sendable {
        public var type: String
        public var diffIDs: [Digest]

        public init(type: String = "layers", diffIDs: [Digest]) {
            self.type = type
            self.diffIDs = diffIDs
        }

        enum CodingKeys: String, CodingKey {
            case type
            case diffIDs = "diff_ids"
        }
    }

    /// How to run the image (`config` in the JSON).
    public struct Execution: Codable, Sendable, Equatable {
        public var user: String?
        public var env: [String]?
        public var entrypoint: [String]?
        public var cmd: [String]?
        public var workingDir: String?

        public init(user: String? = nil, env: [String]? = nil, entrypoint: [String]? = nil, cmd: [String]? = nil, workingDir: String? = nil) {
            self.user = user
            self.env = env
            self.entrypoint = entrypoint
            self.cmd = cmd
            self.workingDir = workingDir
        }

        enum CodingKeys: String, CodingKey {
            case user = "User"
            case env = "Env"
            case entrypoint = "Entrypoint"
            case cmd = "Cmd"
            case workingDir = "WorkingDir"
        }
    }

    public var architecture: String?
    public var os: String?
    public var variant: String?
    public var config: Execution?
    public var rootfs: RootFS

    public init(architecture: String = "amd64", os: String = "linux", config: Execution? = nil, rootfs: RootFS) {
        self.architecture = architecture
        self.os = os
        self.config = config
        self.rootfs = rootfs
    }
}

/// One image in a `docker save` archive's `manifest.json`.
struct DockerArchiveManifestEntry: Codable, Sendable {
    var config: String
    var repoTags: [String]?
    var layers: [String]

    enum CodingKeys: String, CodingKey {
        case config = "Config"
        case repoTags = "RepoTags"
        case layers = "Layers"
    }
}
