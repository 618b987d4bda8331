public import Foundation
public import ThawMetadata
public import ThawSeal

/// The manifest an image URI resolved to.
public struct ResolvedCode: Sendable, Equatable {
    public var manifestID: String
    public var root: RootID
    public var imageSize: UInt64

    public init(manifestID: String, root: RootID, imageSize: UInt64) {
        self.manifestID = manifestID
        self.root = root
        self.imageSize = imageSize
    }
}

/// Turns `Code.ImageUri` into a pushed manifest: an image reference Thaw reads (`oci:…`,
/// `docker-archive:…`) is pushed; a function name or a manifest id already pushed is looked up.
public protocol FunctionCodeSource: Sendable {
    /// - Throws: `LambdaError` naming what cannot be used.
    func resolve(imageURI: String) async throws -> ResolvedCode
}

/// How a start was served, in the `X-Thaw-Start` response header and the metrics.
public enum StartKind: String, Sendable, Codable {
    case warm, deduplicated, cold
}

/// What one invocation gave.
public struct InvocationOutcome: Sendable {
    /// The handler's standard output.
    public var response: [UInt8]
    /// The handler's standard error.
    public var log: [UInt8]
    /// Why the invocation failed (handler exit status, timeout, oversized response), or nil.
    public var failure: String?
    /// The `errorType` Lambda reports for that failure (`Runtime.ExitError`, `Sandbox.Timedout`,
    /// `Runtime.OutOfMemory`, `Function.ResponseSizeTooLarge`).
    public var errorType: String
    public var start: StartKind

    public init(response: [UInt8], log: [UInt8], failure: String?, errorType: String = "Runtime.ExitError", start: StartKind) {
        self.response = response
        self.log = log
        self.failure = failure
        self.errorType = errorType
        self.start = start
    }
}

/// Runs a function once with an event.
public protocol FunctionInvoker: Sendable {
    /// - Throws: `LambdaError` when the invocation could not run at all (too many at once,
    ///   the image cannot be served); a handler that fails is an outcome, not an error.
    func invoke(_ function: FunctionRecord, settings: FunctionSettings, event: [UInt8]) async throws -> InvocationOutcome

    /// Lets go of the instances this agent keeps for `function`: it was deleted, or its code
    /// changed. (Another agent's idle instances of it stop at their keep-alive, or, for changed
    /// code, at that agent's next invocation of it.)
    func forget(_ function: FunctionName) async
}

extension FunctionInvoker {
    public func forget(_ function: FunctionName) async {}
}
