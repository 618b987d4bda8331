public import ThawSandboxCore

/// How one invocation went.
public struct SandboxOutcome: Sendable {
    /// Standard output, up to the limit.
    public var response: [UInt8]
    /// The last `logTailLimit` bytes of standard error.
    public var logTail: [UInt8]
    /// How the init (and so the handler) ended; nil when it was never started.
    public var termination: Termination?
    /// `MonotonicTime` of each step the init reported, and of the end.
    public var deviceAttached: UInt64?
    public var rootMounted: UInt64?
    public var handlerStarted: UInt64?
    public var finished: UInt64
    /// The loop device the image was attached to.
    public var loopDevice: String?
    /// What the init preloaded into the mounted image's caches (`ImagePreloader`), as it
    /// reported it; nil when it preloaded nothing.
    public var preloaded: String?
    /// Why the invocation failed; nil when the handler answered.
    public var failure: SandboxError?
    /// Teardown that did not complete in time (a loop device still attached): empty when
    /// nothing was left behind.
    public var leftovers: [String]

    public init(response: [UInt8], logTail: [UInt8], termination: Termination?, deviceAttached: UInt64? = nil, rootMounted: UInt64? = nil,
                handlerStarted: UInt64? = nil, finished: UInt64, loopDevice: String? = nil, failure: SandboxError? = nil, leftovers: [String]) {
        self.response = response
        self.logTail = logTail
        self.termination = termination
        self.deviceAttached = deviceAttached
        self.rootMounted = rootMounted
        self.handlerStarted = handlerStarted
        self.finished = finished
        self.loopDevice = loopDevice
        self.failure = failure
        self.leftovers = leftovers
    }
}
