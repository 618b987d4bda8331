import ThawBinary
import Crypto

/// A tenant: whose keys seal a manifest. Names appear in store keys and key file names.
public struct Tenant: Hashable, Sendable, CustomStringConvertible {
    public let name: String
    public static let `default` = try! Tenant("default")

    /// 1–64 characters of `a-z 0-9 . _ -`, not starting with a dot.
    public init(_ name: String) throws {
        let ok = name.utf8.allSatisfy {
            ($0 >= 0x61 && $0 <= 0x7a) || ($0 >= 0x30 && $0 <= 0x39) || $0 == 0x2e || $0 == 0x5f || $0 == 0x2d
        }
        guard ok, !name.isEmpty, name.utf8.count <= 64, !name.hasPrefix(".") else {
            throw SealError(.invalidValue, "tenant '\(name)' must be 1 to 64 characters of a-z, 0-9, '.', '_' and '-', not starting with '.'")
        }
        self.name = name
    }

    public var description: String { name }
}

/// A data key wrapped by a tenant key, as stored in a sealed object.
public struct WrappedKey: Sendable, Equatable {
    /// Which tenant key wrapped it (8 bytes derived from the key), so a wrong key is told
    /// apart from a tampered object.
    public var keyID: [UInt8]
    /// AES-256-GCM nonce ‖ ciphertext ‖ tag of the 32-byte data key.
    public var sealed: [UInt8]

    public static let keyIDSize = 8
    public static let sealedSize = 12 + 32 + 16
}

/// Where tenant keys live: a key management service or, by default, local key files.
///
/// Providers wrap and unwrap data keys; tenant keys never leave the provider. `context` binds a
/// wrapped key to the object it protects (as a KMS encryption context does), so a wrapped key
/// copied into another object does not open.
public protocol TenantKeyProvider: Sendable {
    /// Wraps `dataKey` for `tenant`, creating the tenant's key if the provider does that.
    func wrap(_ dataKey: [UInt8], tenant: Tenant, context: [UInt8]) async throws -> WrappedKey
    /// Unwraps a data key; `SealError.wrongKey` or `.tampered` when it cannot.
    func unwrap(_ wrapped: WrappedKey, tenant: Tenant, context: [UInt8]) async throws -> [UInt8]
}

/// Wrapping shared by providers that hold the tenant key themselves.
public enum KeyWrapping {
    public static func keyID(of key: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: Array("thaw.key-id".utf8) + [0] + key).prefix(WrappedKey.keyIDSize))
    }

    static func additionalData(tenant: Tenant, context: [UInt8]) -> [UInt8] {
        Array("thaw.wrap.v1".utf8) + [0] + Array(tenant.name.utf8) + [0] + context
    }

    public static func wrap(_ dataKey: [UInt8], with tenantKey: [UInt8], tenant: Tenant, context: [UInt8]) throws -> WrappedKey {
        let box = try AES.GCM.seal(dataKey, using: SymmetricKey(data: tenantKey),
                                   authenticating: additionalData(tenant: tenant, context: context))
        return WrappedKey(keyID: keyID(of: tenantKey), sealed: Array(box.combined!))
    }

    public static func unwrap(_ wrapped: WrappedKey, with tenantKey: [UInt8], tenant: Tenant, context: [UInt8], source: String) throws -> [UInt8] {
        let held = keyID(of: tenantKey)
        guard wrapped.keyID == held else {
            throw SealError(.wrongKey, "the data key was wrapped by tenant key \(Hex.encode(wrapped.keyID)), but \(source) holds key \(Hex.encode(held)) for tenant '\(tenant)'")
        }
        do {
            let box = try AES.GCM.SealedBox(combined: wrapped.sealed)
            return Array(try AES.GCM.open(box, using: SymmetricKey(data: tenantKey),
                                          authenticating: additionalData(tenant: tenant, context: context)))
        } catch {
            throw SealError(.tampered, "the wrapped data key does not authenticate for tenant '\(tenant)': the object was changed after sealing")
        }
    }
}
