/// What the handshake does with each option, and the replies it builds.
extension NBDHandshake {
    /// Acts on one whole option; the state is already back to reading the next header.
    mutating func handle(_ option: NBDOption, data: [UInt8]) {
        switch option {
        case .exportName:
            // No error reply exists for this option: a name that is not text is refused by
            // closing, like a name that is not exported.
            guard let name = Self.text(data[...]) else {
                state = .failed(NBDProtocolError(.exportRefused, "the export name asked for is not valid UTF-8"))
                return
            }
            state = .lookingUp(ExportRequest(option: option, name: name, information: []))
        case .abort:
            // Any data is ignored, as the protocol asks.
            pending.append(.send(Self.optionReply(option, .ack)))
            state = .aborted
        case .list:
            if data.isEmpty {
                state = .listing
            } else {
                refuse(option, .errorInvalid, "NBD_OPT_LIST carries no data")
            }
        case .info, .go:
            readExportRequest(option, data)
        default:
            // STARTTLS, STRUCTURED_REPLY, the metadata contexts, extended headers and options
            // not known at all: Thaw speaks plain simple replies only.
            refuse(option, .errorUnsupported, "\(option) is not supported")
        }
    }

    /// Parses the data of `NBD_OPT_INFO` or `NBD_OPT_GO`: a 32-bit name length, the name, a
    /// 16-bit count and that many 16-bit information types, and nothing after.
    mutating func readExportRequest(_ option: NBDOption, _ data: [UInt8]) {
        guard data.count >= 6 else {
            return refuse(option, .errorInvalid, "\(option) data is \(data.count) bytes, shorter than the 6 required")
        }
        let nameLength = data.bigEndian(at: 0, width: 4)
        guard nameLength <= UInt64(data.count - 6) else {
            return refuse(option, .errorInvalid, "\(option) names an export of \(nameLength) bytes in \(data.count) bytes of data")
        }
        guard nameLength <= UInt64(limits.maxExportNameLength) else {
            state = .failed(NBDProtocolError(
                .exportNameTooLong, "an export name of \(nameLength) bytes is longer than \(limits.maxExportNameLength)"))
            return
        }
        let nameEnd = 4 + Int(nameLength)
        let count = Int(data.bigEndian(at: nameEnd, width: 2))
        guard data.count == nameEnd + 2 + 2 * count else {
            return refuse(option, .errorInvalid, "\(option) lists \(count) information requests in the wrong number of bytes")
        }
        guard let name = Self.text(data[4..<nameEnd]) else {
            return refuse(option, .errorInvalid, "the export name is not valid UTF-8")
        }
        var information: Set<NBDInfoType> = []
        for index in 0..<count {
            information.insert(NBDInfoType(rawValue: UInt16(data.bigEndian(at: nameEnd + 2 + 2 * index, width: 2))))
        }
        state = .lookingUp(ExportRequest(option: option, name: name, information: information))
    }

    /// `NBD_OPT_EXPORT_NAME` answered: the export's size and flags, then transmission.
    mutating func finishExportName(_ export: NBDExportDescription?, request: ExportRequest) {
        guard let export else {
            state = .failed(NBDProtocolError(.exportRefused, "there is no export named \"\(request.name)\""))
            return
        }
        var bytes: [UInt8] = []
        bytes.appendBigEndian(export.size)
        bytes.appendBigEndian(export.flags.rawValue)
        if !clientFlags.contains(.noZeroes) {
            bytes += [UInt8](repeating: 0, count: 124)
        }
        pending.append(.send(bytes))
        state = .transmission(export)
    }

    /// `NBD_OPT_INFO` or `NBD_OPT_GO` answered: the information replies and an ACK (and for GO,
    /// transmission), or `NBD_REP_ERR_UNKNOWN`.
    mutating func finishInfo(_ export: NBDExportDescription?, request: ExportRequest) {
        guard let export else {
            return refuse(request.option, .errorUnknown, "there is no export named \"\(request.name)\"")
        }
        var bytes: [UInt8] = []
        var info: [UInt8] = []
        info.appendBigEndian(NBDInfoType.export.rawValue)
        info.appendBigEndian(export.size)
        info.appendBigEndian(export.flags.rawValue)
        bytes += Self.optionReply(request.option, .info, info)

        // Sent even when not asked for: clients that do not understand it ignore it.
        info = []
        info.appendBigEndian(NBDInfoType.blockSize.rawValue)
        info.appendBigEndian(limits.minimumBlockSize)
        info.appendBigEndian(limits.preferredBlockSize)
        info.appendBigEndian(UInt32(clamping: limits.maxPayload))
        bytes += Self.optionReply(request.option, .info, info)

        if request.information.contains(.name) {
            info = []
            info.appendBigEndian(NBDInfoType.name.rawValue)
            info += export.name.utf8
            bytes += Self.optionReply(request.option, .info, info)
        }
        if request.information.contains(.description), let description = export.description {
            info = []
            info.appendBigEndian(NBDInfoType.description.rawValue)
            info += Self.truncated(description, toBytes: limits.maxExportNameLength)
            bytes += Self.optionReply(request.option, .info, info)
        }
        bytes += Self.optionReply(request.option, .ack)
        pending.append(.send(bytes))
        state = request.option == .go ? .transmission(export) : .optionHeader
    }

    /// Answers `option` with an error reply carrying `message`, and waits for the next option.
    mutating func refuse(_ option: NBDOption, _ type: NBDOptionReplyType, _ message: String) {
        pending.append(.send(Self.optionReply(option, type, Array(message.utf8))))
        state = .optionHeader
    }

    /// One option reply: magic, option, reply type, data length, data.
    static func optionReply(_ option: NBDOption, _ type: NBDOptionReplyType, _ data: [UInt8] = []) -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(20 + data.count)
        bytes.appendBigEndian(NBDMagic.optionReply)
        bytes.appendBigEndian(option.rawValue)
        bytes.appendBigEndian(type.rawValue)
        bytes.appendBigEndian(UInt32(data.count))
        bytes += data
        return bytes
    }

    /// The UTF-8 of `text`, cut to at most `limit` bytes (NBD's string limit) without splitting a
    /// character's encoding.
    static func truncated(_ text: String, toBytes limit: Int) -> [UInt8] {
        let bytes = Array(text.utf8)
        guard bytes.count > limit else { return bytes }
        var end = limit
        // A continuation byte just past the cut means a character straddles it: leave it out.
        while end > 0 && bytes[end] & 0xc0 == 0x80 { end -= 1 }
        return Array(bytes[..<end])
    }

    /// The bytes as a string when they are valid UTF-8 without NUL, as NBD strings must be.
    static func text(_ bytes: ArraySlice<UInt8>) -> String? {
        let string = String(decoding: bytes, as: UTF8.self)
        guard string.utf8.elementsEqual(bytes), !bytes.contains(0) else { return nil }
        return string
    }
}
