/// The server side of NBD's fixed newstyle handshake (`doc/proto.md`, "Fixed newstyle
/// negotiation"), as a state machine that performs no I/O.
///
/// The caller sends what `next()` hands it, feeds whatever the client sends to `receive(_:)`,
/// and answers look-ups with `resolveExport(_:)` and `resolveExportList(_:)`, because finding an
/// export may take a store round trip that this type knows nothing of. Bytes arrive in any
/// split: a message is acted on only once all of it is buffered.
///
/// Options the protocol lets the server refuse get an error reply and the handshake goes on;
/// input that leaves no reply to make, or that goes past `NBDLimits`, makes `next()` throw, and
/// the caller closes the connection.
public struct NBDHandshake: Sendable {
    /// What the caller does next.
    public enum Step: Sendable, Hashable {
        /// Nothing can happen until more of the client's bytes are received.
        case needMoreBytes
        /// Send these bytes to the client, then call `next()` again.
        case send([UInt8])
        /// Find the export with this name (empty for the default export) and pass it, or nil,
        /// to `resolveExport(_:)`.
        case lookUpExport(name: String)
        /// Pass the names of all exports to `resolveExportList(_:)`.
        case listExports
        /// The handshake is over: serve this export. Bytes the client sent after the handshake
        /// are in `takeRemainingBytes()`.
        case startTransmission(NBDExportDescription)
        /// The client gave up (`NBD_OPT_ABORT`, already acknowledged): close the connection.
        case abort
    }

    enum State: Sendable {
        case clientFlags
        case optionHeader
        case optionData(NBDOption, length: Int)
        case lookingUp(ExportRequest)
        case listing
        case transmission(NBDExportDescription)
        case aborted
        case failed(NBDProtocolError)
    }

    /// An option that names an export, waiting for the caller's look-up.
    struct ExportRequest: Sendable {
        var option: NBDOption
        var name: String
        var information: Set<NBDInfoType>
    }

    public let limits: NBDLimits
    /// The flags the client answered the greeting with.
    public private(set) var clientFlags: NBDClientFlags = []
    var input = InputBuffer()
    var state: State = .clientFlags
    var pending: [Step] = []
    var optionsSeen = 0

    /// The flags Thaw's server offers.
    public static let handshakeFlags: NBDHandshakeFlags = [.fixedNewstyle, .noZeroes]

    /// A handshake whose first step sends the server's greeting.
    public init(limits: NBDLimits = NBDLimits()) {
        self.limits = limits
        var greeting: [UInt8] = []
        greeting.appendBigEndian(NBDMagic.initial)
        greeting.appendBigEndian(NBDMagic.option)
        greeting.appendBigEndian(Self.handshakeFlags.rawValue)
        pending = [.send(greeting)]
    }

    /// Buffers bytes received from the client.
    public mutating func receive(_ bytes: some Sequence<UInt8>) {
        input.append(bytes)
    }

    /// Bytes the client sent after the handshake ended (its first requests, when it did not
    /// wait for the reply); empties the buffer.
    public mutating func takeRemainingBytes() -> [UInt8] {
        input.takeAll()
    }

    /// The next thing to do. Once the handshake has ended, it keeps returning the final step
    /// (or throwing the same error).
    public mutating func next() throws(NBDProtocolError) -> Step {
        while true {
            if !pending.isEmpty { return pending.removeFirst() }
            switch state {
            case .failed(let error):
                throw error
            case .transmission(let export):
                return .startTransmission(export)
            case .aborted:
                return .abort
            case .lookingUp(let request):
                return .lookUpExport(name: request.name)
            case .listing:
                return .listExports
            case .clientFlags:
                guard let bytes = input.take(4) else { return .needMoreBytes }
                try readClientFlags(NBDClientFlags(rawValue: UInt32(bytes.bigEndian(at: 0, width: 4))))
            case .optionHeader:
                guard let header = input.take(16) else { return .needMoreBytes }
                try readOptionHeader(header)
            case .optionData(let option, let length):
                guard let data = input.take(length) else { return .needMoreBytes }
                state = .optionHeader
                handle(option, data: Array(data))
            }
        }
    }

    /// Answers `.lookUpExport`: the export, or nil when there is none by that name.
    public mutating func resolveExport(_ export: NBDExportDescription?) {
        guard case .lookingUp(let request) = state else {
            preconditionFailure("resolveExport called when no export look-up was asked for")
        }
        if request.option == .exportName {
            finishExportName(export, request: request)
        } else {
            finishInfo(export, request: request)
        }
    }

    /// Answers `.listExports` with the name of each export.
    public mutating func resolveExportList(_ names: [String]) {
        guard case .listing = state else {
            preconditionFailure("resolveExportList called when no export list was asked for")
        }
        var bytes: [UInt8] = []
        for name in names {
            var data: [UInt8] = []
            data.appendBigEndian(UInt32(name.utf8.count))
            data.append(contentsOf: name.utf8)
            bytes += Self.optionReply(.list, .server, data)
        }
        bytes += Self.optionReply(.list, .ack)
        pending.append(.send(bytes))
        state = .optionHeader
    }

    // MARK: Reading the client's messages

    mutating func readClientFlags(_ flags: NBDClientFlags) throws(NBDProtocolError) {
        let known: NBDClientFlags = [.fixedNewstyle, .noZeroes]
        guard flags.contains(.fixedNewstyle) else {
            throw fail(.unsupportedClientFlags, "the client does not speak fixed newstyle negotiation (flags \(hex(flags.rawValue)))")
        }
        guard known.isSuperset(of: flags) else {
            throw fail(.unsupportedClientFlags, "the client sent unknown flags \(hex(flags.subtracting(known).rawValue))")
        }
        clientFlags = flags
        state = .optionHeader
    }

    mutating func readOptionHeader(_ header: ArraySlice<UInt8>) throws(NBDProtocolError) {
        let magic = header.bigEndian(at: 0, width: 8)
        guard magic == NBDMagic.option else {
            throw fail(.badOptionMagic, "an option starts with \(hex(magic)), not IHAVEOPT")
        }
        let option = NBDOption(rawValue: UInt32(header.bigEndian(at: 8, width: 4)))
        let length = header.bigEndian(at: 12, width: 4)
        optionsSeen += 1
        guard optionsSeen <= limits.maxOptions else {
            throw fail(.tooManyOptions, "the client sent more than \(limits.maxOptions) options without starting transmission")
        }
        guard length <= UInt64(limits.maxOptionData) else {
            throw fail(.optionTooLarge, "\(option) carries \(length) bytes, more than the \(limits.maxOptionData) allowed")
        }
        if option == .exportName && length > UInt64(limits.maxExportNameLength) {
            throw fail(.exportNameTooLong, "an export name of \(length) bytes is longer than \(limits.maxExportNameLength)")
        }
        state = .optionData(option, length: Int(length))
    }

    mutating func fail(_ kind: NBDProtocolError.Kind, _ message: String) -> NBDProtocolError {
        let error = NBDProtocolError(kind, message)
        state = .failed(error)
        return error
    }

    func hex(_ value: some BinaryInteger) -> String { "0x" + String(value, radix: 16) }
}
