import Testing
@testable import ThawNBDProtocol

/// The fixed newstyle handshake, transcript by transcript: what the client sends, the exact
/// bytes the server answers, and how the handshake ends.
@Suite struct HandshakeTests {
    static let fixed: UInt32 = 1
    static let fixedNoZeroes: UInt32 = 3

    @Test func greetingIsExact() throws {
        var machine = NBDHandshake()
        let first = try machine.next()
        #expect(first == .send([0x4e, 0x42, 0x44, 0x4d, 0x41, 0x47, 0x49, 0x43,
                                0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54,
                                0x00, 0x03]))
        #expect(try machine.next() == .needMoreBytes)
    }

    @Test func exportNameWithZeroes() {
        let run = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(1, Array("disk".utf8)))
        #expect(run.sent == Wire.greeting + Wire.be(1 << 20, 8) + [0x01, 0x03] + [UInt8](repeating: 0, count: 124))
        #expect(run.lookUps == ["disk"])
        #expect(run.ending == .transmission(NBDExportDescription(name: "disk", size: 1 << 20)))
    }

    @Test func exportNameWithoutZeroes() {
        let run = HandshakeRun(Wire.clientFlags(Self.fixedNoZeroes) + Wire.option(1))
        #expect(run.sent == Wire.greeting + Wire.be(1000, 8) + [0x01, 0x03])
        #expect(run.lookUps == [""])
        #expect(run.ending == .transmission(NBDExportDescription(name: "default", size: 1000)))
    }

    @Test func exportNameOfAMissingExportCloses() {
        let run = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(1, Array("nope".utf8)))
        #expect(run.sent == Wire.greeting)
        #expect(run.ending == .error(.exportRefused))
    }

    @Test func exportNameThatIsNotUTF8Closes() {
        let run = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(1, [0x64, 0xff, 0x64]))
        #expect(run.lookUps.isEmpty)
        #expect(run.ending == .error(.exportRefused))
        let withNul = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(1, [0x64, 0x00]))
        #expect(withNul.ending == .error(.exportRefused))
    }

    @Test func goSendsExportAndBlockSizeThenStartsTransmission() {
        let run = HandshakeRun(Wire.clientFlags(Self.fixedNoZeroes) + Wire.option(7, Wire.exportRequest("disk")))
        #expect(run.sent == Wire.greeting + Wire.infoExport(7, size: 1 << 20) + Wire.infoBlockSize(7) + Wire.ack(7))
        #expect(run.ending == .transmission(NBDExportDescription(name: "disk", size: 1 << 20)))
    }

    @Test func goAnswersNameAndDescriptionWhenAsked() {
        let exports: [String: UInt64] = ["": 5, "described": 4096]
        let run = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(7, Wire.exportRequest("", [1, 2, 3, 0x7777])),
                               exports: exports)
        // The default export has no description: only its canonical name is added.
        #expect(run.sent == Wire.greeting + Wire.infoExport(7, size: 5) + Wire.infoBlockSize(7)
            + Wire.reply(7, 3, [0x00, 0x01] + Array("default".utf8)) + Wire.ack(7))
        let described = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(7, Wire.exportRequest("described", [2, 1])),
                                     exports: exports)
        #expect(described.sent == Wire.greeting + Wire.infoExport(7, size: 4096) + Wire.infoBlockSize(7)
            + Wire.reply(7, 3, [0x00, 0x01] + Array("described".utf8))
            + Wire.reply(7, 3, [0x00, 0x02] + Array("a test disk".utf8)) + Wire.ack(7))
    }

    @Test func longDescriptionsAreCutWithoutSplittingACharacter() {
        #expect(NBDHandshake.truncated("abc", toBytes: 3) == Array("abc".utf8))
        #expect(NBDHandshake.truncated("abcd", toBytes: 3) == Array("abc".utf8))
        // "é" is two bytes: a cut through it leaves it out.
        #expect(NBDHandshake.truncated("aé", toBytes: 2) == Array("a".utf8))
        #expect(NBDHandshake.truncated("aé", toBytes: 3) == Array("aé".utf8))
        #expect(NBDHandshake.truncated("a€b", toBytes: 3) == Array("a".utf8))
        #expect(NBDHandshake.truncated("a€b", toBytes: 4) == Array("a€".utf8))
    }

    @Test func infoThenGoOnOneConnection() {
        let input = Wire.clientFlags(Self.fixed) + Wire.option(6, Wire.exportRequest("disk", [3]))
            + Wire.option(7, Wire.exportRequest("disk", [3]))
        let run = HandshakeRun(input)
        let answer = Wire.infoExport(6, size: 1 << 20) + Wire.infoBlockSize(6) + Wire.ack(6)
        #expect(run.sent == Wire.greeting + answer + Wire.infoExport(7, size: 1 << 20) + Wire.infoBlockSize(7) + Wire.ack(7))
        #expect(run.lookUps == ["disk", "disk"])
        #expect(run.ending == .transmission(NBDExportDescription(name: "disk", size: 1 << 20)))
    }

    @Test func unknownExportIsAnErrorReplyAndTheHandshakeGoesOn() {
        let input = Wire.clientFlags(Self.fixed) + Wire.option(6, Wire.exportRequest("nope"))
            + Wire.option(7, Wire.exportRequest("nope")) + Wire.option(7, Wire.exportRequest("disk"))
        let run = HandshakeRun(input)
        #expect(run.sent == Wire.greeting
            + Wire.errorReply(6, 0x8000_0006, "there is no export named \"nope\"")
            + Wire.errorReply(7, 0x8000_0006, "there is no export named \"nope\"")
            + Wire.infoExport(7, size: 1 << 20) + Wire.infoBlockSize(7) + Wire.ack(7))
        #expect(run.ending == .transmission(NBDExportDescription(name: "disk", size: 1 << 20)))
    }

    @Test func listSendsOneServerReplyPerExportThenAck() {
        let run = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(3) + Wire.option(2),
                               exports: ["": 1, "a": 2, "disk": 3])
        #expect(run.sent == Wire.greeting
            + Wire.reply(3, 2, [0, 0, 0, 0]) + Wire.reply(3, 2, [0, 0, 0, 1, 0x61]) + Wire.reply(3, 2, [0, 0, 0, 4] + Array("disk".utf8))
            + Wire.ack(3) + Wire.ack(2))
        #expect(run.lists == 1)
        #expect(run.ending == .abort)
        let none = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(3), exports: [:])
        #expect(none.sent == Wire.greeting + Wire.ack(3))
    }

    @Test func listWithDataIsInvalid() {
        let run = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(3, [1]) + Wire.option(2))
        #expect(run.sent == Wire.greeting + Wire.errorReply(3, 0x8000_0003, "NBD_OPT_LIST carries no data") + Wire.ack(2))
        #expect(run.lists == 0)
    }

    @Test func abortIsAcknowledgedEvenWithData() {
        let run = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(2, [9, 9, 9]))
        #expect(run.sent == Wire.greeting + Wire.ack(2))
        #expect(run.ending == .abort)
    }

    @Test(arguments: [
        (UInt32(4), "NBD_OPT_PEEK_EXPORT"), (5, "NBD_OPT_STARTTLS"), (8, "NBD_OPT_STRUCTURED_REPLY"),
        (9, "NBD_OPT_LIST_META_CONTEXT"), (10, "NBD_OPT_SET_META_CONTEXT"), (11, "NBD_OPT_EXTENDED_HEADERS"),
        (0, "option 0"), (12, "option 12"), (0xffff_ffff, "option 4294967295"),
    ])
    func unsupportedOptionsAreRefusedAndTheHandshakeGoesOn(option: UInt32, name: String) {
        let input = Wire.clientFlags(Self.fixed) + Wire.option(option, Array("data".utf8)) + Wire.option(7, Wire.exportRequest(""))
        let run = HandshakeRun(input)
        #expect(run.sent == Wire.greeting + Wire.errorReply(option, 0x8000_0001, "\(name) is not supported")
            + Wire.infoExport(7, size: 1000) + Wire.infoBlockSize(7) + Wire.ack(7))
        #expect(run.ending == .transmission(NBDExportDescription(name: "default", size: 1000)))
    }

    @Test func malformedInfoRequestsAreInvalid() {
        let cases: [([UInt8], String)] = [
            ([0, 0, 0, 0, 0], "NBD_OPT_GO data is 5 bytes, shorter than the 6 required"),
            (Wire.be(3, 4) + [0x64, 0x64] + [0, 0], "NBD_OPT_GO names an export of 3 bytes in 8 bytes of data"),
            (Array(Wire.exportRequest("disk", [1]).dropLast()), "NBD_OPT_GO lists 1 information requests in the wrong number of bytes"),
            (Wire.exportRequest("disk") + [0], "NBD_OPT_GO lists 0 information requests in the wrong number of bytes"),
            (Wire.be(2, 4) + [0xc3, 0x28] + [0, 0], "the export name is not valid UTF-8"),
        ]
        for (data, message) in cases {
            let run = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(7, data) + Wire.option(2))
            #expect(run.sent == Wire.greeting + Wire.errorReply(7, 0x8000_0003, message) + Wire.ack(2), "\(message)")
            #expect(run.lookUps.isEmpty)
            #expect(run.ending == .abort)
        }
    }

    @Test(arguments: [UInt32(0), 2, 4, 0x8000_0001, 0xffff_fffc])
    func clientFlagsWithoutFixedNewstyleOrWithUnknownBitsClose(flags: UInt32) {
        let run = HandshakeRun(Wire.clientFlags(flags) + Wire.option(7, Wire.exportRequest("")))
        #expect(run.sent == Wire.greeting)
        #expect(run.ending == .error(.unsupportedClientFlags))
    }

    @Test func badOptionMagicCloses() {
        var input = Wire.clientFlags(Self.fixed) + Wire.option(3)
        input[4] ^= 0x20
        let run = HandshakeRun(input)
        #expect(run.sent == Wire.greeting)
        #expect(run.ending == .error(.badOptionMagic))
    }

    @Test func oversizedOptionClosesBeforeItsDataArrives() {
        let header = Wire.ihaveopt + Wire.be(7, 4) + Wire.be(64 * 1024 + 1, 4)
        let run = HandshakeRun(Wire.clientFlags(Self.fixed) + header)
        #expect(run.ending == .error(.optionTooLarge))
        // Exactly the limit is accepted (and here refused as malformed, not closed).
        let largest = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(7, [UInt8](repeating: 0, count: 64 * 1024)))
        #expect(largest.ending == .needMoreBytes)
        #expect(largest.sent.count > Wire.greeting.count)
    }

    @Test func longExportNamesClose() {
        let longest = String(repeating: "n", count: 4096)
        let tooLong = longest + "n"
        let fits = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(7, Wire.exportRequest(longest)))
        #expect(fits.lookUps == [longest])
        let go = HandshakeRun(Wire.clientFlags(Self.fixed) + Wire.option(7, Wire.exportRequest(tooLong)))
        #expect(go.ending == .error(.exportNameTooLong))
        #expect(go.lookUps.isEmpty)
        // NBD_OPT_EXPORT_NAME is refused from its header alone.
        let header = Wire.ihaveopt + Wire.be(1, 4) + Wire.be(4097, 4)
        let exportName = HandshakeRun(Wire.clientFlags(Self.fixed) + header)
        #expect(exportName.ending == .error(.exportNameTooLong))
    }

    @Test func tooManyOptionsClose() {
        var limits = NBDLimits()
        limits.maxOptions = 5
        let five = Wire.clientFlags(Self.fixed) + (0..<5).flatMap { _ in Wire.option(8) }
        let allowed = HandshakeRun(five + Wire.option(2), limits: limits)
        #expect(allowed.ending == .error(.tooManyOptions))
        #expect(allowed.sent == Wire.greeting + (0..<5).flatMap { _ in Wire.errorReply(8, 0x8000_0001, "NBD_OPT_STRUCTURED_REPLY is not supported") })
        let exactly = HandshakeRun(Wire.clientFlags(Self.fixed) + (0..<4).flatMap { _ in Wire.option(8) } + Wire.option(2), limits: limits)
        #expect(exactly.ending == .abort)
    }

    @Test func anySplitOfTheInputGivesTheSameTranscript() {
        let input = Wire.clientFlags(Self.fixed) + Wire.option(8) + Wire.option(3) + Wire.option(6, Wire.exportRequest("disk", [1]))
            + Wire.option(7, Wire.exportRequest("disk")) + Wire.request(0, cookie: 7, length: 512)
        let whole = HandshakeRun(input)
        for piece in [1, 2, 3, 5, 7, 16, 17, 100] {
            let split = HandshakeRun(input, pieceSize: piece)
            #expect(split.sent == whole.sent, "pieces of \(piece)")
            #expect(split.ending == whole.ending)
            #expect(split.remaining == whole.remaining)
        }
        #expect(whole.remaining == Wire.request(0, cookie: 7, length: 512))
    }

    @Test func truncatedInputWaitsForMore() {
        let input = Wire.clientFlags(Self.fixed) + Wire.option(7, Wire.exportRequest("disk"))
        for cut in [0, 3, 4, 10, 19, input.count - 1] {
            let run = HandshakeRun(Array(input[..<cut]))
            #expect(run.ending == .needMoreBytes, "cut at \(cut)")
            #expect(run.sent == Wire.greeting)
        }
    }

    @Test func errorsAndEndingsAreSticky() throws {
        var machine = NBDHandshake()
        _ = try machine.next()
        machine.receive(Wire.clientFlags(0))
        #expect(throws: NBDProtocolError.self) { try machine.next() }
        machine.receive(Wire.clientFlags(1))
        let again = #expect(throws: NBDProtocolError.self) { try machine.next() }
        #expect(again?.kind == .unsupportedClientFlags)

        var aborted = NBDHandshake()
        aborted.receive(Wire.clientFlags(1) + Wire.option(2))
        #expect(try aborted.next() == .send(Wire.greeting))
        #expect(try aborted.next() == .send(Wire.ack(2)))
        #expect(try aborted.next() == .abort)
        #expect(try aborted.next() == .abort)
    }

    @Test func lookUpIsAskedUntilAnswered() throws {
        var machine = NBDHandshake()
        machine.receive(Wire.clientFlags(3) + Wire.option(1, Array("x".utf8)))
        #expect(try machine.next() == .send(Wire.greeting))
        #expect(try machine.next() == .lookUpExport(name: "x"))
        #expect(try machine.next() == .lookUpExport(name: "x"))
        machine.resolveExport(NBDExportDescription(name: "x", size: 0))
        #expect(try machine.next() == .send(Wire.be(0, 8) + [0x01, 0x03]))
        #expect(try machine.next() == .startTransmission(NBDExportDescription(name: "x", size: 0)))
        #expect(machine.clientFlags == [.fixedNewstyle, .noZeroes])
    }
}
