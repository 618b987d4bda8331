import Crypto

/// A garbage-collection root: a namespace in the origin store that holds manifests and the
/// chunks they reference, deleted as a whole when it expires. Its id is part of every salt,
/// so the same content pushed into two roots gives two independent chunks.
public struct RootID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let value: String

    /// The root a store starts with before any rotation.
    public static let initial = try! RootID("r0001")

    /// Root ids appear in store keys, so they are short and plain: 1–32 of `a-z 0-9 -`.
    public init(_ value: String) throws {
        let allowed = value.utf8.allSatisfy { ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2d }
        guard !value.isEmpty, value.utf8.count <= 32, allowed else {
            throw SealError(.invalidValue, "root id '\(value)' must be 1 to 32 characters of a-z, 0-9 and '-'")
        }
        self.value = value
    }

    public var description: String { value }
    public static func < (a: RootID, b: RootID) -> Bool { a.value < b.value }
}

/// The salt of convergent encryption: fixed by the root and a small replica index.
///
/// Identical plaintext under one salt seals to one chunk, which is what deduplicates storage;
/// a handful of replica indexes per root bound how many functions depend on any single copy
/// of popular content, so one bad chunk cannot break every function that shares it.
public struct Salt: Hashable, Sendable {
    public let root: RootID
    public let replica: UInt8
    /// SHA-256("thaw.salt.v1" ‖ 0x00 ‖ root ‖ 0x00 ‖ replica): 32 bytes.
    public let bytes: [UInt8]

    public init(root: RootID, replica: UInt8) {
        self.root = root
        self.replica = replica
        var hasher = SHA256()
        hasher.update(data: Array("thaw.salt.v1".utf8) + [0] + Array(root.value.utf8) + [0, replica])
        bytes = Array(hasher.finalize())
    }

    /// The replica a tenant's pushes use: spread by a hash of the tenant name, so each tenant's
    /// own images always deduplicate with each other.
    public static func replica(forTenant tenant: String, replicas: Int) -> UInt8 {
        precondition(replicas >= 1 && replicas <= 256)
        let digest = Array(SHA256.hash(data: Array("thaw.replica".utf8) + [0] + Array(tenant.utf8)))
        return UInt8(Int(digest[0]) % replicas)
    }
}
