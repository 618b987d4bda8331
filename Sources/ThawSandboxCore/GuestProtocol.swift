import ThawBinary

/// What the host hands a microVM's guest init on the request disk, and what the guest hands
/// back on the response disk. Disks, not the console: they carry any bytes of any size, need no
/// driver beyond virtio-blk, and the host reads the answer after the VM has powered off.
///
/// ```
/// request disk:  "THAWREQ1" | blob arguments… (u32 count, then each a u32-length blob)
///                | environment (same) | blob working directory | blob user | u64 tmpfs bytes
///                | u64 response limit | blob event | u8 flags (bit 0: snapshot)
///                | zero padding to a 512-byte sector
/// response disk: sector 0..7 (4 KiB): "THAWRSP0" until the guest answers, then "THAWRSP1"
///                | u8 ended by signal | i32 status or signal | u64 response length
///                | blob failure (empty when the handler ran); the response from byte 4096
/// ```
///
/// A snapshot boot (flag set, no event) starts the handler with a pipe on its standard input
/// and says `ready` once the handler has loaded and waits; the host then snapshots the VM. A
/// restored VM finds its event when the host rewrites the request disk (same size) as
/// `"THAWEVT1" | blob event`, which the guest polls for with direct reads past its page cache.
public enum GuestProtocol {
    public static let requestMagic = Array("THAWREQ1".utf8)
    public static let emptyResponseMagic = Array("THAWRSP0".utf8)
    public static let responseMagic = Array("THAWRSP1".utf8)
    public static let responseOffset = 4096
    public static let eventMagic = Array("THAWEVT1".utf8)
    /// The request disk of a snapshot boot: a restore's event must fit the same disk.
    public static let snapshotRequestDiskSize = 8 << 20

    /// The request disk a restored VM reads its event from, padded to `snapshotRequestDiskSize`.
    ///
    /// - Throws: `SandboxError(.setupFailed)` when the event does not fit.
    public static func eventDisk(_ event: [UInt8]) throws -> [UInt8] {
        var writer = ByteWriter()
        writer.raw(eventMagic)
        writer.blob(event)
        guard writer.bytes.count <= snapshotRequestDiskSize else {
            throw SandboxError(.setupFailed, "the event is \(event.count) bytes; a restored function takes at most \(snapshotRequestDiskSize - 12)")
        }
        return writer.bytes + [UInt8](repeating: 0, count: snapshotRequestDiskSize - writer.bytes.count)
    }

    /// The event on a restore's request disk; nil while the disk holds something else.
    public static func event(onDisk bytes: [UInt8]) -> [UInt8]? {
        guard bytes.starts(with: eventMagic) else { return nil }
        var reader = ByteReader(Array(bytes.dropFirst(eventMagic.count)), what: "event disk")
        return try? reader.blob("event")
    }

    public struct Request: Sendable, Equatable {
        public var launch: HandlerLauncher.Launch
        public var tmpSize: UInt64
        public var responseLimit: UInt64
        public var event: [UInt8]
        /// A snapshot boot: start the handler, say `ready`, and wait for the event disk.
        public var snapshot: Bool

        public init(launch: HandlerLauncher.Launch, tmpSize: UInt64, responseLimit: UInt64, event: [UInt8], snapshot: Bool = false) {
            self.launch = launch
            self.tmpSize = tmpSize
            self.responseLimit = responseLimit
            self.event = event
            self.snapshot = snapshot
        }

        /// The disk image: the encoding padded to whole sectors.
        public func encoded() -> [UInt8] {
            var writer = ByteWriter()
            writer.raw(requestMagic)
            for list in [launch.arguments, launch.environment] {
                writer.u32(UInt32(list.count))
                for item in list { writer.blob(Array(item.utf8)) }
            }
            writer.blob(Array(launch.workingDirectory.utf8))
            writer.blob(Array(launch.user.utf8))
            writer.u64(tmpSize)
            writer.u64(responseLimit)
            writer.blob(event)
            writer.u8(snapshot ? 1 : 0)
            var bytes = writer.bytes
            bytes += [UInt8](repeating: 0, count: (512 - bytes.count % 512) % 512)
            return bytes
        }

        public init(decoding bytes: [UInt8]) throws {
            guard bytes.starts(with: requestMagic) else {
                throw SandboxError(.setupFailed, "the request disk does not start with THAWREQ1")
            }
            var reader = ByteReader(Array(bytes.dropFirst(requestMagic.count)), what: "guest request")
            func list(_ what: String) throws -> [String] {
                let count = try reader.u32(what)
                return try (0..<count).map { _ in String(decoding: try reader.blob(what), as: UTF8.self) }
            }
            do {
                let arguments = try list("arguments")
                let environment = try list("environment")
                let directory = String(decoding: try reader.blob("working directory"), as: UTF8.self)
                let user = String(decoding: try reader.blob("user"), as: UTF8.self)
                launch = HandlerLauncher.Launch(arguments: arguments, environment: environment,
                                                workingDirectory: directory, user: user)
                tmpSize = try reader.u64("tmpfs size")
                responseLimit = try reader.u64("response limit")
                event = try reader.blob("event")
                snapshot = try reader.u8("flags") & 1 == 1
            } catch {
                throw SandboxError(.setupFailed, "the request disk is malformed: \(error)")
            }
        }
    }

    /// How the handler ended and what it answered, or why it never ran.
    public struct Response: Sendable, Equatable {
        public var termination: Termination
        public var responseLength: UInt64
        /// Why the guest could not run the handler (nil when it ran).
        public var failure: String?
        /// Whether `failure` is a missing handler program.
        public var handlerMissing: Bool

        public init(termination: Termination, responseLength: UInt64, failure: String? = nil, handlerMissing: Bool = false) {
            self.termination = termination
            self.responseLength = responseLength
            self.failure = failure
            self.handlerMissing = handlerMissing
        }

        /// The header sector the guest writes at offset 0.
        public func encodedHeader() -> [UInt8] {
            var writer = ByteWriter()
            writer.raw(responseMagic)
            switch termination {
            case .exited(let code):
                writer.u8(0)
                writer.u32(UInt32(bitPattern: code))
            case .signalled(let signal):
                writer.u8(1)
                writer.u32(UInt32(bitPattern: signal))
            }
            writer.u64(responseLength)
            writer.u8(handlerMissing ? 1 : 0)
            writer.blob(Array((failure ?? "").utf8.prefix(3000)))
            var bytes = writer.bytes
            bytes += [UInt8](repeating: 0, count: responseOffset - bytes.count)
            return bytes
        }

        /// Reads the header; nil when the guest never answered (the placeholder is still there).
        public init?(decodingHeader bytes: [UInt8]) throws {
            if bytes.starts(with: emptyResponseMagic) { return nil }
            guard bytes.starts(with: responseMagic) else {
                throw SandboxError(.setupFailed, "the response disk holds neither THAWRSP0 nor THAWRSP1")
            }
            var reader = ByteReader(Array(bytes.dropFirst(responseMagic.count)), what: "guest response")
            do {
                let signalled = try reader.u8("termination kind") == 1
                let code = Int32(bitPattern: try reader.u32("status"))
                termination = signalled ? .signalled(code) : .exited(code)
                responseLength = try reader.u64("response length")
                handlerMissing = try reader.u8("handler missing") == 1
                let text = String(decoding: try reader.blob("failure"), as: UTF8.self)
                failure = text.isEmpty ? nil : text
            } catch {
                throw SandboxError(.setupFailed, "the response disk is malformed: \(error)")
            }
        }
    }
}
