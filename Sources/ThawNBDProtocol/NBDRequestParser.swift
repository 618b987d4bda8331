/// Reads transmission-phase requests (`doc/proto.md`, "Request message") from the client's
/// bytes, in any split, and checks each against the export.
///
/// Only the compact 28-byte request header is understood: the handshake refuses extended
/// headers. Write payloads are skipped as they arrive, never held, so a write costs no memory.
public struct NBDRequestParser: Sendable {
    /// The size of a request header: magic, flags, type, cookie, offset, length.
    public static let headerSize = 28

    enum State: Sendable {
        case header
        /// Skipping the payload of a write that will be refused with `cookie`.
        case skipping(cookie: UInt64, remaining: Int)
        case disconnected
        case failed(NBDProtocolError)
    }

    public let exportSize: UInt64
    public let limits: NBDLimits
    var input = InputBuffer()
    var state: State = .header

    public init(exportSize: UInt64, limits: NBDLimits = NBDLimits()) {
        self.exportSize = exportSize
        self.limits = limits
    }

    /// Buffers bytes received from the client.
    public mutating func receive(_ bytes: some Sequence<UInt8>) {
        input.append(bytes)
    }

    /// The next whole request, or nil until more bytes arrive. After `.disconnect` it returns
    /// nil forever and ignores further bytes; after an error it throws that error again.
    public mutating func next() throws(NBDProtocolError) -> NBDRequest? {
        while true {
            switch state {
            case .failed(let error):
                throw error
            case .disconnected:
                _ = input.takeAll()
                return nil
            case .skipping(let cookie, let remaining):
                let left = remaining - input.skip(upTo: remaining)
                if left > 0 {
                    state = .skipping(cookie: cookie, remaining: left)
                    return nil
                }
                state = .header
                return .refuse(cookie: cookie, error: .notPermitted)
            case .header:
                guard let header = input.take(Self.headerSize) else { return nil }
                if let request = try read(header) { return request }
            }
        }
    }

    /// Checks one header; nil when a write's payload must be skipped first.
    mutating func read(_ header: ArraySlice<UInt8>) throws(NBDProtocolError) -> NBDRequest? {
        let magic = UInt32(header.bigEndian(at: 0, width: 4))
        guard magic == NBDMagic.request else {
            let error = NBDProtocolError(.badRequestMagic, "a request starts with 0x\(String(magic, radix: 16)), not the request magic")
            state = .failed(error)
            throw error
        }
        let flags = NBDCommandFlags(rawValue: UInt16(header.bigEndian(at: 4, width: 2)))
        let command = NBDCommand(rawValue: UInt16(header.bigEndian(at: 6, width: 2)))
        let cookie = header.bigEndian(at: 8, width: 8)
        let offset = header.bigEndian(at: 16, width: 8)
        let length = header.bigEndian(at: 24, width: 4)

        switch command {
        case .read:
            // No command flag applies: FUA and DF were not offered.
            guard flags.isEmpty, length > 0, length <= UInt64(limits.maxPayload),
                  offset <= exportSize, length <= exportSize - offset else {
                return .refuse(cookie: cookie, error: .invalid)
            }
            return .read(cookie: cookie, offset: offset, length: Int(length))
        case .write:
            guard length <= UInt64(limits.maxPayload) else {
                let error = NBDProtocolError(.payloadTooLarge, "a write carries \(length) bytes, more than the \(limits.maxPayload) allowed")
                state = .failed(error)
                throw error
            }
            state = .skipping(cookie: cookie, remaining: Int(length))
            return nil
        case .disconnect:
            state = .disconnected
            return .disconnect
        case .trim, .writeZeroes:
            // Writes without a payload: the export is read-only.
            return .refuse(cookie: cookie, error: .notPermitted)
        default:
            return .refuse(cookie: cookie, error: .invalid)
        }
    }
}
