public import ThawSandboxCore
import Foundation
import Glibc

/// Everything the sandbox's init needs, handed from the host to `thaw sandbox-init` as JSON on
/// a pipe (`descriptor`), so that the init can be started before the image is known
/// (`LaunchedSandbox`).
public struct SandboxPlan: Codable, Sendable, Equatable {
    /// The init's descriptor the plan arrives on; the host closes it after the plan.
    public static let descriptor: Int32 = 4

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
    /// A warm sandbox: the init starts a handler each time the host asks, on the descriptors
    /// the host sends over the control socket (descriptor 3), instead of once (see `WarmSandbox`).
    public var reusable: Bool
    /// The memory cgroup the init moves into before anything else (see `MemoryCgroup`); nil
    /// leaves the function's memory uncapped.
    public var memoryCgroup: String?
    /// What the init loads into the mounted image's caches while the handler starts, first
    /// read first (see `ImagePreload`); nil or empty loads nothing.
    public var preload: PreloadRuns?

    public init(imageFile: String, workDirectory: String, tmpSize: Int, network: Network, hostname: String = "thaw",
                deviceReadAheadKiB: Int? = nil, function: FunctionSpec, reusable: Bool = false, memoryCgroup: String? = nil,
                preload: [PreloadRun]? = nil) {
        self.preload = preload.map(PreloadRuns.init)
        self.reusable = reusable
        self.memoryCgroup = memoryCgroup
        self.deviceReadAheadKiB = deviceReadAheadKiB
        self.imageFile = imageFile
        self.workDirectory = workDirectory
        self.tmpSize = tmpSize
        self.network = network
        self.hostname = hostname
        self.function = function
    }
}

extension SandboxPlan {
    /// The plan as the host sends it: one line of JSON. The line's end, not the pipe's, ends
    /// it, so a copy of the write end that leaked into another process cannot keep the init
    /// waiting.
    public func encodedLine() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        return Array(try encoder.encode(self)) + [0x0a]
    }

    /// Reads the plan (`encodedLine`) from `descriptor`; nil when the host closed it without
    /// writing one (it abandoned the launched sandbox).
    ///
    /// - Throws: `SandboxError(.setupFailed)` naming what was wrong with what arrived.
    public static func receive(from descriptor: Int32 = SandboxPlan.descriptor) throws -> SandboxPlan? {
        defer { close(descriptor) }
        var text: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while text.last != 0x0a {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else {
                throw SandboxError(.setupFailed, "cannot read the sandbox's plan: \(String(cString: strerror(errno)))")
            }
            if count == 0 { break }
            text += buffer[0..<count]
        }
        if text.isEmpty { return nil }
        guard text.last == 0x0a else {
            throw SandboxError(.setupFailed, "the sandbox's plan ended after \(text.count) bytes, before its end of line")
        }
        do {
            return try JSONDecoder().decode(SandboxPlan.self, from: Data(text.dropLast()))
        } catch {
            throw SandboxError(.setupFailed, "unreadable sandbox plan: \(error)")
        }
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
        /// A warm sandbox's handler ended (`status` as a shell reports it).
        case handlerEnded
    }

    public var stage: Stage
    /// `MonotonicTime.now()` when it happened.
    public var time: UInt64
    public var detail: String?
    /// For `.failed`: the handler's program is missing (`SandboxError.Kind.handlerNotFound`).
    public var handlerMissing: Bool?
    /// For `.failed`: the function's settings are unusable, an unknown user for one
    /// (`SandboxError.Kind.invalidFunction`).
    public var invalidFunction: Bool?
    /// For `.handlerEnded`, the handler's exit status, or 128 plus the signal that killed it.
    public var status: Int32?

    public init(stage: Stage, time: UInt64 = MonotonicTime.now(), detail: String? = nil, handlerMissing: Bool? = nil,
                invalidFunction: Bool? = nil, status: Int32? = nil) {
        self.status = status
        self.invalidFunction = invalidFunction
        self.stage = stage
        self.time = time
        self.detail = detail
        self.handlerMissing = handlerMissing
    }
}

extension SandboxReport {
    /// A `.failed` report as the host's error.
    var setupError: SandboxError {
        let kind: SandboxError.Kind = handlerMissing == true ? .handlerNotFound : invalidFunction == true ? .invalidFunction : .setupFailed
        return SandboxError(kind, detail ?? "the sandbox could not be built")
    }

    /// The report of a failure inside the init.
    static func failure(_ error: SandboxError) -> SandboxReport {
        SandboxReport(stage: .failed, detail: error.message, handlerMissing: error.kind == .handlerNotFound ? true : nil,
                      invalidFunction: error.kind == .invalidFunction ? true : nil)
    }
}
