import Testing
@testable import ThawNBDProtocol

/// The transmission-phase request parser: every command, every bound, every split.
@Suite struct RequestParserTests {
    static let size: UInt64 = 10_000_000

    /// Parses `input` fed in pieces, returning the requests and the error that ended it, if any.
    static func parse(_ input: [UInt8], size: UInt64 = size, pieceSize: Int = .max,
                      limits: NBDLimits = NBDLimits()) -> ([NBDRequest], NBDProtocolError?) {
        var parser = NBDRequestParser(exportSize: size, limits: limits)
        var requests: [NBDRequest] = []
        var offset = 0
        repeat {
            let end = offset + min(pieceSize, input.count - offset)
            parser.receive(input[offset..<end])
            offset = end
            do {
                while let request = try parser.next() { requests.append(request) }
            } catch {
                return (requests, error)
            }
        } while offset < input.count
        return (requests, nil)
    }

    @Test func readsWithinTheExport() {
        let input = Wire.request(0, cookie: 0x0102_0304_0506_0708, offset: 4096, length: 512)
            + Wire.request(0, cookie: 2, offset: Self.size - 1, length: 1)
            + Wire.request(0, cookie: 3, offset: 0, length: 32 << 20)
        let (requests, error) = Self.parse(input, size: 64 << 20)
        #expect(error == nil)
        #expect(requests == [
            .read(cookie: 0x0102_0304_0506_0708, offset: 4096, length: 512),
            .read(cookie: 2, offset: Self.size - 1, length: 1),
            .read(cookie: 3, offset: 0, length: 32 << 20),
        ])
    }

    @Test func badReadsAreRefusedWithEINVAL() {
        let bad: [[UInt8]] = [
            Wire.request(0, cookie: 1, offset: 0, length: 0),
            Wire.request(0, cookie: 1, offset: 0, length: (32 << 20) + 1),
            Wire.request(0, cookie: 1, offset: Self.size, length: 1),
            Wire.request(0, cookie: 1, offset: Self.size - 511, length: 512),
            Wire.request(0, cookie: 1, offset: UInt64.max - 10, length: 512),
            Wire.request(0, cookie: 1, offset: UInt64.max, length: 1),
            Wire.request(0, flags: 1, cookie: 1, offset: 0, length: 512),
            Wire.request(0, flags: 4, cookie: 1, offset: 0, length: 512),
        ]
        for input in bad {
            let (requests, error) = Self.parse(input + Wire.request(2, cookie: 9))
            #expect(error == nil)
            #expect(requests == [.refuse(cookie: 1, error: .invalid), .disconnect])
        }
    }

    @Test func writesAreSkippedThenRefusedWithEPERM() {
        let payload = (0..<5000).map { UInt8(truncatingIfNeeded: $0) }
        let input = Wire.request(1, cookie: 5, offset: 0, length: 5000) + payload + Wire.request(0, cookie: 6, length: 8)
            + Wire.request(1, cookie: 7, offset: 0, length: 0) + Wire.request(2, cookie: 8)
        let expected: [NBDRequest] = [
            .refuse(cookie: 5, error: .notPermitted), .read(cookie: 6, offset: 0, length: 8),
            .refuse(cookie: 7, error: .notPermitted), .disconnect,
        ]
        for piece in [1, 13, 28, 4096, .max] {
            let (requests, error) = Self.parse(input, pieceSize: piece)
            #expect(error == nil)
            #expect(requests == expected, "pieces of \(piece)")
        }
    }

    @Test func aWriteTooLargeToSkipCloses() {
        let (requests, error) = Self.parse(Wire.request(1, cookie: 5, offset: 0, length: (32 << 20) + 1))
        #expect(requests.isEmpty)
        #expect(error?.kind == .payloadTooLarge)
    }

    @Test func writeCommandsWithoutPayloadGetEPERMAndOthersEINVAL() {
        let commands: [(UInt16, NBDErrorCode)] = [
            (3, .invalid), (4, .notPermitted), (5, .invalid), (6, .notPermitted), (7, .invalid),
            (8, .invalid), (9, .invalid), (0xffff, .invalid),
        ]
        for (command, code) in commands {
            let (requests, error) = Self.parse(Wire.request(command, cookie: 42, offset: 0, length: 4096) + Wire.request(0, cookie: 1, length: 1))
            #expect(error == nil)
            #expect(requests == [.refuse(cookie: 42, error: code), .read(cookie: 1, offset: 0, length: 1)], "command \(command)")
        }
    }

    @Test func badMagicClosesAndStaysClosed() throws {
        var input = Wire.request(0, cookie: 1, length: 1) + Wire.request(0, cookie: 2, length: 1)
        input[28] = 0x26
        var parser = NBDRequestParser(exportSize: Self.size)
        parser.receive(input)
        #expect(try parser.next() == .read(cookie: 1, offset: 0, length: 1))
        let first = #expect(throws: NBDProtocolError.self) { try parser.next() }
        #expect(first?.kind == .badRequestMagic)
        parser.receive(Wire.request(0, cookie: 3, length: 1))
        let second = #expect(throws: NBDProtocolError.self) { try parser.next() }
        #expect(second?.kind == .badRequestMagic)
    }

    @Test func disconnectEndsParsing() throws {
        var parser = NBDRequestParser(exportSize: Self.size)
        parser.receive(Wire.request(2, flags: 0xffff, cookie: 1, offset: 99, length: 99) + Wire.request(0, cookie: 2, length: 1) + [1, 2, 3])
        #expect(try parser.next() == .disconnect)
        #expect(try parser.next() == nil)
        parser.receive([0xff])
        #expect(try parser.next() == nil)
    }

    @Test func partialHeadersWait() throws {
        let input = Wire.request(0, cookie: 1, offset: 0, length: 512)
        var parser = NBDRequestParser(exportSize: Self.size)
        for byte in input.dropLast() {
            parser.receive([byte])
            #expect(try parser.next() == nil)
        }
        parser.receive([input.last!])
        #expect(try parser.next() == .read(cookie: 1, offset: 0, length: 512))
        #expect(try parser.next() == nil)
    }

    @Test func anEmptyExportRefusesEveryRead() {
        let (requests, _) = Self.parse(Wire.request(0, cookie: 1, offset: 0, length: 1), size: 0)
        #expect(requests == [.refuse(cookie: 1, error: .invalid)])
    }

    @Test func limitsAreConfigurable() {
        var limits = NBDLimits()
        limits.maxPayload = 4096
        let (requests, error) = Self.parse(Wire.request(0, cookie: 1, length: 4097) + Wire.request(0, cookie: 2, length: 4096)
            + Wire.request(1, cookie: 3, length: 4097), limits: limits)
        #expect(requests == [.refuse(cookie: 1, error: .invalid), .read(cookie: 2, offset: 0, length: 4096)])
        #expect(error?.kind == .payloadTooLarge)
    }
}
