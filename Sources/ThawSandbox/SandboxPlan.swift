public import ThawSandboxCore

/// Everything the sandbox's init needs, handed from the host to `thaw sandbox-init` as JSON.
public struct SandboxPlan: Codable, Sendable, Equatable {
    public enum Network: String, Codable, Sendable, CaseIterable {
        /// A network namespace of its own with only loopback, up.
        case none
        /// The host's network.
        case host
    }

    /// The image file to attach read-only to a loop device (the agent's FUSE file).
    public var imageFile: String
    /// An empty directory the init mounts its private tmpfs on; every other mount lives under it.
    public var workDirectory: String
    /// Bytes of the tmpfs that holds the overlay's writable layer, `/tmp` included.
    public var tmpSize: Int
    public var network: Network
    public var hostname: String
    /// The loop device's read-ahead in KiB (its queue's `read_ahead_kb`); nil keeps the kernel's.
    /// Every byte read ahead is a byte fetched, so a start fetches less with little of it.
    public var deviceReadAheadKiB: Int?
    public var function: FunctionSpec

    public init(imageFile: String, workDirectory: String, tmpSize: Int, network: Network, hostname: String = "thaw",
                deviceReadAheadKiB: Int? = nil, function: FunctionSpec) {
        self.deviceReadAheadKiB = deviceReadAheadKiB
        self.imageFile = imageFile
        self.workDirectory = workDirectory
        self.tmpSize = tmpSize
        self.network = network
        self.hostname = hostname
        self.function = function
    }
}

/// What the init tells the host on its report pipe, one JSON object per line.
public struct SandboxReport: Codable, Sendable, Equatable {
    public enum Stage: String, Codable, Sendable {
        /// The loop device is attached (`detail` is its path).
        case deviceAttached
        /// The image is mounted with its overlay, proc and /dev, ready to chroot.
        case rootMounted
        /// The handler process exists.
        case handlerStarted
        /// Setting up failed before the handler ran (`detail` says why).
        case failed
    }

    public var stage: Stage
    /// `MonotonicTime.now()` when it happened.
    public var time: UInt64
    public var detail: String?
    /// For `.failed`, the `SandboxError.Kind` it maps to on the host.
    public var handlerMissing: Bool?

    public init(stage: Stage, time: UInt64 = MonotonicTime.now(), detail: String? = nil, handlerMissing: Bool? = nil) {
        self.stage = stage
        self.time = time
        self.detail = detail
        self.handlerMissing = handlerMissing
    }
}
