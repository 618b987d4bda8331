import ThawBinary

/// A memory snapshot of a started function: its VM's RAM, pushed as a manifest of its own (the
/// memory manifest, chunks sealed like an image's), and everything else a restore needs and
/// must match: the VM's device state, its configuration, and digests of the kernel, initramfs
/// and handler it was taken with.
///
/// Sealed like a manifest: the public part names the image manifest the snapshot belongs to and
/// its memory manifest, so garbage collection can follow the reference without a key; the rest
/// is in the sealed payload (the device state holds guest registers).
///
/// ```
/// public:  image manifest id (short string) | memory manifest id (short string)
/// payload: memory MiB u32 | response limit u64 | tmp size u64 | kernel SHA-256 (32)
///          | initramfs SHA-256 (32) | launch SHA-256 (32) | kernel arguments (blob, space-separated)
///          | accelerator (short string) | taken at, ms since 1970 u64 | device state (blob)
/// ```
public struct SnapshotRecord: Sendable, Equatable {
    public static let formatVersion: UInt16 = 1

    /// The image manifest whose function the snapshot is of.
    public var imageManifestID: String
    /// The manifest of the RAM file, in the same root.
    public var memoryManifestID: String
    public var memoryMiB: UInt32
    public var responseLimit: UInt64
    public var tmpSize: UInt64
    public var kernelDigest: [UInt8]
    public var initramfsDigest: [UInt8]
    /// SHA-256 of the handler's launch (arguments, environment, directory, user) the guest
    /// started before the snapshot: a restore runs that handler, whatever it is asked.
    public var launchDigest: [UInt8]
    public var kernelArguments: String
    public var accelerator: String
    public var takenAtMilliseconds: UInt64
    /// What qemu saved besides the RAM (devices and CPU), tens of kilobytes.
    public var deviceState: [UInt8]

    public init(imageManifestID: String, memoryManifestID: String, memoryMiB: UInt32, responseLimit: UInt64, tmpSize: UInt64,
                kernelDigest: [UInt8], initramfsDigest: [UInt8], launchDigest: [UInt8], kernelArguments: String,
                accelerator: String, takenAtMilliseconds: UInt64, deviceState: [UInt8]) {
        self.imageManifestID = imageManifestID
        self.memoryManifestID = memoryManifestID
        self.memoryMiB = memoryMiB
        self.responseLimit = responseLimit
        self.tmpSize = tmpSize
        self.kernelDigest = kernelDigest
        self.initramfsDigest = initramfsDigest
        self.launchDigest = launchDigest
        self.kernelArguments = kernelArguments
        self.accelerator = accelerator
        self.takenAtMilliseconds = takenAtMilliseconds
        self.deviceState = deviceState
    }

    func publicPart() -> [UInt8] {
        var writer = ByteWriter()
        writer.shortString(imageManifestID)
        writer.shortString(memoryManifestID)
        return writer.bytes
    }

    /// The record sealed for `tenant`.
    public func sealed(tenant: Tenant, keys: any TenantKeyProvider) async throws -> [UInt8] {
        var payload = ByteWriter()
        payload.u32(memoryMiB)
        payload.u64(responseLimit)
        payload.u64(tmpSize)
        payload.raw(kernelDigest)
        payload.raw(initramfsDigest)
        payload.raw(launchDigest)
        payload.blob(Array(kernelArguments.utf8))
        payload.shortString(accelerator)
        payload.u64(takenAtMilliseconds)
        payload.blob(deviceState)
        return try await SealedObject.seal(kind: .snapshot, version: Self.formatVersion, publicPart: publicPart(),
                                           payload: payload.bytes, tenant: tenant, keys: keys)
    }

    /// The manifest ids a sealed record names, read without a key (garbage collection).
    public static func references(in bytes: [UInt8], what: String = "snapshot record") throws -> (image: String, memory: String) {
        let parsed = try SealedObject.parse(bytes, expecting: .snapshot, versions: formatVersion...formatVersion, what: what)
        var reader = ByteReader(parsed.publicPart, what: what)
        return try malformedOnTruncation { (try reader.shortString("image manifest id"), try reader.shortString("memory manifest id")) }
    }

    /// Opens a sealed record and checks it belongs to `image`.
    ///
    /// - Throws: `SealError` — `.malformedManifest` when it is truncated or belongs to another
    ///   manifest; `.unsupportedVersion`, `.wrongKey`, `.tampered`.
    public static func open(_ bytes: [UInt8], for image: ManifestHeader, keys: any TenantKeyProvider,
                            what: String = "snapshot record") async throws -> SnapshotRecord {
        let parsed = try SealedObject.parse(bytes, expecting: .snapshot, versions: formatVersion...formatVersion, what: what)
        let (imageID, memoryID) = try references(in: bytes, what: what)
        guard imageID == image.id else {
            throw SealError(.malformedManifest, "\(what) belongs to manifest \(imageID), not \(image.id)")
        }
        let payload = try await SealedObject.open(parsed, tenant: image.tenant, keys: keys, what: what)
        var reader = ByteReader(payload, what: what)
        return try malformedOnTruncation {
            let record = SnapshotRecord(
                imageManifestID: imageID, memoryManifestID: memoryID, memoryMiB: try reader.u32("memory MiB"),
                responseLimit: try reader.u64("response limit"), tmpSize: try reader.u64("tmp size"),
                kernelDigest: try reader.raw(32, "kernel digest"), initramfsDigest: try reader.raw(32, "initramfs digest"),
                launchDigest: try reader.raw(32, "launch digest"),
                kernelArguments: String(decoding: try reader.blob("kernel arguments"), as: UTF8.self),
                accelerator: try reader.shortString("accelerator"), takenAtMilliseconds: try reader.u64("taken at"),
                deviceState: try reader.blob("device state"))
            guard reader.remaining == 0 else {
                throw SealError(.malformedManifest, "\(what) has \(reader.remaining) bytes after its end")
            }
            return record
        }
    }
}
