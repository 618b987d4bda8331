import Crypto
import ThawBinary

/// The envelope every sealed Thaw object shares (manifests, layer records, access records,
/// image config records, snapshot records):
/// a public part anyone can read and a private payload only the tenant can.
///
/// ```
/// magic "THAW" | kind u8 | version u16 | public length u32 | public bytes
/// | wrapped data key: key id (8) | nonce (12) ‖ encrypted key (32) ‖ tag (16)
/// | payload: nonce (12) | length u32 | ciphertext | tag (16)
/// ```
/// The data key is fresh per object and wrapped by the tenant key with everything before it as
/// context; the payload is AES-256-GCM under the data key with everything before the payload
/// nonce as associated data. So any change to any byte is detected, and the public part needs no
/// key to read. All integers are little-endian. See docs/chunk-format.md.
public enum SealedObject {
    public enum Kind: UInt8, Sendable {
        case manifest = 0x4d  // "M"
        case layerRecord = 0x4c  // "L"
        case accessRecord = 0x52  // "R"
        case imageConfig = 0x43  // "C"
        case snapshot = 0x53  // "S"
        case patchTable = 0x50  // "P"
    }

    static let magic: [UInt8] = Array("THAW".utf8)

    /// Seals `payload` with a fresh data key wrapped for `tenant`.
    public static func seal(kind: Kind, version: UInt16, publicPart: [UInt8], payload: [UInt8],
                            tenant: Tenant, keys: any TenantKeyProvider) async throws -> [UInt8] {
        var writer = ByteWriter()
        writer.raw(magic)
        writer.u8(kind.rawValue)
        writer.u16(version)
        writer.u32(UInt32(publicPart.count))
        writer.raw(publicPart)
        let dataKey = SymmetricKey(size: .bits256)
        let dataKeyBytes = dataKey.withUnsafeBytes { Array($0) }
        let wrapped = try await keys.wrap(dataKeyBytes, tenant: tenant, context: writer.bytes)
        writer.raw(wrapped.keyID)
        writer.raw(wrapped.sealed)
        let box = try AES.GCM.seal(payload, using: dataKey, authenticating: writer.bytes)
        writer.raw(Array(box.nonce))
        writer.u32(UInt32(payload.count))
        writer.raw(Array(box.ciphertext))
        writer.raw(Array(box.tag))
        return writer.bytes
    }

    /// The parts of a sealed object, before anything is decrypted.
    public struct Parsed: Sendable {
        public var kind: Kind
        public var version: UInt16
        public var publicPart: [UInt8]
        var wrappedKey: WrappedKey
        /// Everything the wrapped key is bound to.
        var wrapContext: ArraySlice<UInt8>
        /// Everything the payload is bound to.
        var payloadContext: ArraySlice<UInt8>
        var nonce: [UInt8]
        var ciphertext: [UInt8]
        var tag: [UInt8]
    }

    /// Parses the envelope and checks kind and version; reads no keys.
    public static func parse(_ bytes: [UInt8], expecting kind: Kind, versions: ClosedRange<UInt16>, what: String) throws -> Parsed {
        try malformedOnTruncation { try parseFields(bytes, expecting: kind, versions: versions, what: what) }
    }

    static func parseFields(_ bytes: [UInt8], expecting kind: Kind, versions: ClosedRange<UInt16>, what: String) throws -> Parsed {
        var reader = ByteReader(bytes, what: what)
        guard try reader.raw(4, "magic") == magic else {
            throw SealError(.malformedManifest, "\(what) is not a sealed Thaw object (bad magic)")
        }
        let kindByte = try reader.u8("kind")
        guard kindByte == kind.rawValue else {
            throw SealError(.malformedManifest, "\(what) is a sealed object of kind 0x\(String(kindByte, radix: 16)), not \(kind)")
        }
        let version = try reader.u16("version")
        guard versions.contains(version) else {
            throw SealError(.unsupportedVersion,
                            "\(what) has format version \(version); this Thaw reads version \(versions.lowerBound)\(versions.count > 1 ? "–\(versions.upperBound)" : "")")
        }
        let publicLength = Int(try reader.u32("public part length"))
        let publicPart = try reader.raw(publicLength, "public part")
        let wrapContext = bytes[0..<reader.offset]
        let keyID = try reader.raw(WrappedKey.keyIDSize, "wrapped key id")
        let sealedKey = try reader.raw(WrappedKey.sealedSize, "wrapped data key")
        let payloadContext = bytes[0..<reader.offset]
        let nonce = try reader.raw(12, "payload nonce")
        let length = Int(try reader.u32("payload length"))
        let ciphertext = try reader.raw(length, "payload")
        let tag = try reader.raw(16, "payload tag")
        guard reader.remaining == 0 else {
            throw SealError(.malformedManifest, "\(what) has \(reader.remaining) bytes after its end")
        }
        return Parsed(kind: kind, version: version, publicPart: publicPart,
                      wrappedKey: WrappedKey(keyID: keyID, sealed: sealedKey),
                      wrapContext: wrapContext, payloadContext: payloadContext,
                      nonce: nonce, ciphertext: ciphertext, tag: tag)
    }

    /// Unwraps the data key and decrypts the payload.
    public static func open(_ parsed: Parsed, tenant: Tenant, keys: any TenantKeyProvider, what: String) async throws -> [UInt8] {
        let dataKey: [UInt8]
        do {
            dataKey = try await keys.unwrap(parsed.wrappedKey, tenant: tenant, context: Array(parsed.wrapContext))
        } catch var error as SealError {
            error.message = "\(what): \(error.message)"
            throw error
        }
        do {
            let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: parsed.nonce), ciphertext: parsed.ciphertext, tag: parsed.tag)
            return Array(try AES.GCM.open(box, using: SymmetricKey(data: dataKey), authenticating: parsed.payloadContext))
        } catch {
            throw SealError(.tampered, "\(what) does not authenticate: it was changed after sealing")
        }
    }
}

/// Runs a parser, turning truncation into a malformed-object error.
func malformedOnTruncation<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as TruncatedInput {
        throw SealError(.malformedManifest, error.description)
    }
}
