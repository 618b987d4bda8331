public import Foundation
public import ThawSeal

/// Where a garbage-collection root is in its life (DESIGN §6): new pushes go to the active
/// root; a retired root is read only while its named manifests are copied forward and by starts
/// that were using them; an expired root holds nothing live, and a read of it raises an alarm;
/// a deleted root is gone.
public enum RootState: String, Sendable, Codable, CaseIterable {
    case active, retired, expired, deleted
}

/// One root as the metadata store keeps it.
public struct RootRecord: Sendable, Equatable {
    public var id: RootID
    public var state: RootState
    public var createdAt: Date
    /// When the root entered its current state.
    public var stateChangedAt: Date
    /// The latest read any agent reported in this root; nil when none was reported.
    public var lastReadAt: Date?
    /// Why deletion of this root is halted (a read while it was expired); nil when clear.
    public var alarm: String?

    public init(id: RootID, state: RootState, createdAt: Date, stateChangedAt: Date, lastReadAt: Date? = nil, alarm: String? = nil) {
        self.id = id
        self.state = state
        self.createdAt = createdAt
        self.stateChangedAt = stateChangedAt
        self.lastReadAt = lastReadAt
        self.alarm = alarm
    }
}

/// A pushed manifest: which root holds it and what it is.
public struct ManifestRecord: Sendable, Equatable {
    public var id: String
    public var root: RootID
    public var tenant: Tenant
    public var imageSize: UInt64
    public var chunkCount: Int
    public var createdAt: Date

    public init(id: String, root: RootID, tenant: Tenant, imageSize: UInt64, chunkCount: Int, createdAt: Date) {
        self.id = id
        self.root = root
        self.tenant = tenant
        self.imageSize = imageSize
        self.chunkCount = chunkCount
        self.createdAt = createdAt
    }
}

/// A start using a manifest: an agent serving it holds this until the start ends, renewing it
/// while it serves. A manifest is live while a name points at it or a start is using it, so a
/// root with a use in it is not expired. A use runs out at `expiresAt`, so an agent that dies
/// without ending its uses holds a root back only that long.
public struct UseRecord: Sendable, Equatable {
    public var manifestID: String
    public var root: RootID
    /// Who uses it: the agent's host, process and instance.
    public var holder: String
    public var expiresAt: Date

    public init(manifestID: String, root: RootID, holder: String, expiresAt: Date) {
        self.manifestID = manifestID
        self.root = root
        self.holder = holder
        self.expiresAt = expiresAt
    }
}

/// A function name and the manifest it points at.
public struct FunctionRecord: Sendable, Equatable {
    public var name: FunctionName
    public var manifestID: String
    public var root: RootID
    public var tenant: Tenant
    public var updatedAt: Date

    public init(name: FunctionName, manifestID: String, root: RootID, tenant: Tenant, updatedAt: Date) {
        self.name = name
        self.manifestID = manifestID
        self.root = root
        self.tenant = tenant
        self.updatedAt = updatedAt
    }
}

/// An invoke-service agent: where it takes invocations forwarded to it, and when it last said
/// it was alive.
public struct AgentRecord: Sendable, Equatable {
    public var id: String
    /// `HOST:PORT` of its Lambda API.
    public var address: String
    public var startedAt: Date
    public var heartbeatAt: Date

    public init(id: String, address: String, startedAt: Date, heartbeatAt: Date) {
        self.id = id
        self.address = address
        self.startedAt = startedAt
        self.heartbeatAt = heartbeatAt
    }
}

/// One kept instance of a function on an agent, in the state it was last put in.
public struct InstanceRecord: Sendable, Equatable {
    public var id: String
    public var agent: String
    public var function: FunctionName
    /// `warm` or `deduplicated`: what the instance holds while idle.
    public var state: String
    public var since: Date

    public init(id: String, agent: String, function: FunctionName, state: String, since: Date) {
        self.id = id
        self.agent = agent
        self.function = function
        self.state = state
        self.since = since
    }
}

/// A function's name: 1–64 characters of `A-Z a-z 0-9 . _ -`, starting with a letter or digit,
/// so it can never be mistaken for an option or a path.
public struct FunctionName: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let value: String

    public init(_ value: String) throws {
        let allowed = value.utf8.allSatisfy {
            ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2e || $0 == 0x5f || $0 == 0x2d
        }
        let first = value.utf8.first
        let startsWell = first.map { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x41 && $0 <= 0x5a) || ($0 >= 0x30 && $0 <= 0x39) } ?? false
        guard allowed, startsWell, value.utf8.count <= 64 else {
            throw MetadataError(.invalidValue, "function name '\(value)' must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-', starting with a letter or digit")
        }
        self.value = value
    }

    public var description: String { value }
    public static func < (a: FunctionName, b: FunctionName) -> Bool { a.value < b.value }
}

/// Why a metadata operation failed, naming what was wrong.
public struct MetadataError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable, Equatable {
        /// A name, id or location that is not valid.
        case invalidValue
        /// The database cannot be opened or reached.
        case unavailable
        /// The database answered with an error, or with rows Thaw did not write.
        case database
        /// The thing asked for is not there.
        case notFound
        /// The operation does not fit the current state (a root in the wrong state).
        case conflict
    }

    public let kind: Kind
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}
