import ThawNBDProtocol

/// libFuzzer's entry point: arbitrary bytes as a client's side of a whole NBD session.
///
/// The first byte picks how the stream is split into deliveries; the rest goes through the
/// handshake and, if it starts transmission, the request parser. The session runs twice, whole
/// and split, and must come out the same. Any trap (a broken invariant below, an overflow, an
/// out-of-bounds index) is a crash libFuzzer reports.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzNBD(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    guard let first = bytes.first else { return 0 }
    let stream = Array(bytes.dropFirst())
    let whole = Session(stream, pieceSize: .max)
    let split = Session(stream, pieceSize: Int(first % 32) + 1)
    precondition(whole == split, "the split of the input changed the session")
    return 0
}

/// What the server did in one session.
struct Session: Equatable {
    static let exports: [String: UInt64] = ["": 1 << 20 | 1, "disk": 4096, "empty": 0]
    /// Limits small enough that inputs of a few KiB reach every one of them.
    static let limits: NBDLimits = {
        var limits = NBDLimits()
        limits.maxOptionData = 600
        limits.maxExportNameLength = 40
        limits.maxOptions = 12
        limits.maxPayload = 2048
        return limits
    }()

    var sent: [UInt8] = []
    var requests: [NBDRequest] = []
    var ending = ""

    init(_ stream: [UInt8], pieceSize: Int) {
        var machine = NBDHandshake(limits: Self.limits)
        var offset = 0
        func nextPiece() -> ArraySlice<UInt8>? {
            guard offset < stream.count else { return nil }
            let end = offset + min(pieceSize, stream.count - offset)
            defer { offset = end }
            return stream[offset..<end]
        }
        var chosen: NBDExportDescription?
        handshake: while true {
            do {
                switch try machine.next() {
                case .needMoreBytes:
                    guard let piece = nextPiece() else {
                        ending = "handshake needs more"
                        return
                    }
                    machine.receive(piece)
                case .send(let bytes):
                    Self.checkReplies(bytes, greeting: sent.isEmpty)
                    sent += bytes
                case .lookUpExport(let name):
                    precondition(name.utf8.count <= Self.limits.maxExportNameLength)
                    machine.resolveExport(Self.exports[name].map { NBDExportDescription(name: name, size: $0) })
                case .listExports:
                    machine.resolveExportList(Self.exports.keys.sorted())
                case .startTransmission(let export):
                    chosen = export
                    break handshake
                case .abort:
                    ending = "abort"
                    return
                }
            } catch {
                ending = "handshake error \(error.kind)"
                return
            }
        }
        guard let export = chosen else { return }
        var parser = NBDRequestParser(exportSize: export.size, limits: Self.limits)
        parser.receive(machine.takeRemainingBytes())
        while true {
            do {
                while let request = try parser.next() {
                    if case .read(_, let readOffset, let length) = request {
                        precondition(length >= 1 && length <= Self.limits.maxPayload)
                        precondition(readOffset <= export.size && UInt64(length) <= export.size - readOffset)
                    }
                    requests.append(request)
                }
            } catch {
                ending = "request error \(error.kind)"
                return
            }
            guard let piece = nextPiece() else {
                ending = "transmission needs more"
                return
            }
            parser.receive(piece)
        }
    }

    /// Every message the handshake sends is whole: the greeting, option replies whose length
    /// field matches, or the 10- or 134-byte answer to NBD_OPT_EXPORT_NAME.
    static func checkReplies(_ bytes: [UInt8], greeting: Bool) {
        if greeting {
            precondition(bytes.count == 18)
            return
        }
        if bytes.count == 10 || bytes.count == 134 { return }
        var index = 0
        while index < bytes.count {
            precondition(bytes.count - index >= 20, "a truncated option reply")
            precondition(bytes[index..<(index + 8)].elementsEqual([0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9]))
            let length = bytes[(index + 16)..<(index + 20)].reduce(0) { $0 << 8 | Int($1) }
            index += 20 + length
        }
        precondition(index == bytes.count, "an option reply's length does not match its data")
    }
}
