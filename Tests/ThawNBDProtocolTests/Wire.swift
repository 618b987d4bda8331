import ThawNBDProtocol

/// Builds what a client sends, and what the server should answer, byte by byte, independently of
/// the code under test.
enum Wire {
    static func be(_ value: UInt64, _ width: Int) -> [UInt8] {
        (0..<width).reversed().map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
    }

    static let nbdMagic = Array("NBDMAGIC".utf8)
    static let ihaveopt = Array("IHAVEOPT".utf8)
    static let replyMagic: [UInt8] = [0x00, 0x03, 0xe8, 0x89, 0x04, 0x55, 0x65, 0xa9]

    /// The server's greeting: magic, IHAVEOPT, fixed newstyle and no zeroes.
    static let greeting = nbdMagic + ihaveopt + [0x00, 0x03]

    static func clientFlags(_ flags: UInt32) -> [UInt8] { be(UInt64(flags), 4) }

    static func option(_ option: UInt32, _ data: [UInt8] = []) -> [UInt8] {
        ihaveopt + be(UInt64(option), 4) + be(UInt64(data.count), 4) + data
    }

    /// The data of NBD_OPT_INFO and NBD_OPT_GO.
    static func exportRequest(_ name: String, _ information: [UInt16] = []) -> [UInt8] {
        be(UInt64(name.utf8.count), 4) + Array(name.utf8) + be(UInt64(information.count), 2)
            + information.flatMap { be(UInt64($0), 2) }
    }

    static func reply(_ option: UInt32, _ type: UInt32, _ data: [UInt8] = []) -> [UInt8] {
        replyMagic + be(UInt64(option), 4) + be(UInt64(type), 4) + be(UInt64(data.count), 4) + data
    }

    static func errorReply(_ option: UInt32, _ type: UInt32, _ message: String) -> [UInt8] {
        reply(option, type, Array(message.utf8))
    }

    /// NBD_REP_INFO with NBD_INFO_EXPORT: size and flags HAS_FLAGS | READ_ONLY | CAN_MULTI_CONN.
    static func infoExport(_ option: UInt32, size: UInt64) -> [UInt8] {
        reply(option, 3, [0x00, 0x00] + be(size, 8) + [0x01, 0x03])
    }

    /// NBD_REP_INFO with NBD_INFO_BLOCK_SIZE: 1, 4096, 32 MiB.
    static func infoBlockSize(_ option: UInt32) -> [UInt8] {
        reply(option, 3, [0x00, 0x03] + be(1, 4) + be(4096, 4) + be(32 << 20, 4))
    }

    static func ack(_ option: UInt32) -> [UInt8] { reply(option, 1) }

    static func request(_ type: UInt16, flags: UInt16 = 0, cookie: UInt64, offset: UInt64 = 0, length: UInt32 = 0) -> [UInt8] {
        [0x25, 0x60, 0x95, 0x13] + be(UInt64(flags), 2) + be(UInt64(type), 2) + be(cookie, 8) + be(offset, 8)
            + be(UInt64(length), 4)
    }
}

/// Runs a handshake against a fixed set of exports, feeding the input in pieces of
/// `pieceSize`, and records everything the server sent and how it ended.
struct HandshakeRun {
    enum Ending: Equatable {
        case needMoreBytes
        case transmission(NBDExportDescription)
        case abort
        case error(NBDProtocolError.Kind)
    }

    var sent: [UInt8] = []
    var lookUps: [String] = []
    var lists = 0
    var ending = Ending.needMoreBytes
    var remaining: [UInt8] = []

    /// `exports` maps names to sizes; an export named "described" has a description.
    init(_ input: [UInt8], exports: [String: UInt64] = ["": 1000, "disk": 1 << 20],
         limits: NBDLimits = NBDLimits(), pieceSize: Int = .max) {
        var machine = NBDHandshake(limits: limits)
        var offset = 0
        loop: while true {
            do {
                switch try machine.next() {
                case .needMoreBytes:
                    guard offset < input.count else { break loop }
                    let end = offset + min(pieceSize, input.count - offset)
                    machine.receive(input[offset..<end])
                    offset = end
                case .send(let bytes):
                    sent += bytes
                case .lookUpExport(let name):
                    lookUps.append(name)
                    machine.resolveExport(exports[name].map {
                        NBDExportDescription(name: name.isEmpty ? "default" : name, size: $0,
                                             description: name == "described" ? "a test disk" : nil)
                    })
                case .listExports:
                    lists += 1
                    machine.resolveExportList(exports.keys.sorted())
                case .startTransmission(let export):
                    ending = .transmission(export)
                    machine.receive(input[offset...])
                    remaining = machine.takeRemainingBytes()
                    return
                case .abort:
                    ending = .abort
                    return
                }
            } catch {
                ending = .error(error.kind)
                return
            }
        }
    }
}
