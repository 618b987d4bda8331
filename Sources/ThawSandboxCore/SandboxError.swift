/// Why a function could not be started or did not answer, with what went wrong.
public struct SandboxError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// The image names no handler (neither Entrypoint nor Cmd), or its settings are unusable.
        case invalidFunction
        /// The handler's program is not in the image, or cannot be executed.
        case handlerNotFound
        /// Building the sandbox failed: namespaces, the loop device, a mount, the user.
        case setupFailed
        /// The handler exited with a non-zero status or was killed by a signal.
        case handlerFailed
        /// The handler did not answer within the timeout.
        case timedOut
        /// The handler wrote more than the response limit.
        case responseTooLarge
        /// The kernel killed the function for using more than its memory limit.
        case outOfMemory
        /// The start was cancelled (SIGINT).
        case cancelled
        /// Too many starts are under way; this one was refused.
        case refused
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
