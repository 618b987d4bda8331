import NIOCore
import Testing
@testable import ThawL2

@Suite struct MemcachedParserTests {
    func parse(_ text: [UInt8], _ expectation: MemcachedParser.Expectation) throws -> (MemcachedResponse?, Int) {
        var buffer = ByteBuffer(bytes: text)
        let reply = try MemcachedParser.parse(&buffer, expecting: expectation)
        return (reply, buffer.readableBytes)
    }

    @Test func valuesMissesAndBinaryPayloads() throws {
        let payload: [UInt8] = [0, 13, 10, 255, 32]
        let reply = Array("VALUE a 0 5\r\n".utf8) + payload + Array("\r\nVALUE b 0 0\r\n\r\nEND\r\nNEXT".utf8)
        let (parsed, left) = try parse(reply, .values)
        #expect(parsed == .values(["a": payload, "b": []]))
        #expect(left == 4, "the next reply stays in the buffer")
        #expect(try parse(Array("END\r\n".utf8), .values).0 == .values([:]))
    }

    @Test func anIncompleteReplyConsumesNothing() throws {
        let whole = Array("VALUE a 0 5\r\nhello\r\nEND\r\n".utf8)
        for cut in 0..<whole.count {
            let (parsed, left) = try parse(Array(whole.prefix(cut)), .values)
            #expect(parsed == nil)
            #expect(left == cut)
        }
        #expect(try parse(whole, .values).0 == .values(["a": Array("hello".utf8)]))
    }

    @Test func statsAndLines() throws {
        let stats = Array("STAT item_size_max 2097152\r\nSTAT maxconns 1024\r\nEND\r\n".utf8)
        #expect(try parse(stats, .stats).0 == .stats(["item_size_max": "2097152", "maxconns": "1024"]))
        #expect(try parse(Array("STORED\r\n".utf8), .line).0 == .line("STORED"))
    }

    @Test func errorsAndGarbage() {
        #expect { try parse(Array("SERVER_ERROR object too large for cache\r\n".utf8), .line) } throws: {
            ($0 as? MemcachedError)?.kind == .server && "\($0)".contains("too large")
        }
        #expect { try parse(Array("HELLO there\r\n".utf8), .values) } throws: { ($0 as? MemcachedError)?.kind == .malformed }
        #expect { try parse(Array("VALUE a 0 2\r\nhiXX".utf8), .values) } throws: { ($0 as? MemcachedError)?.kind == .malformed }
        #expect { try parse(Array("STORED\n".utf8), .line) } throws: { ($0 as? MemcachedError)?.kind == .malformed }
    }

    @Test func requestsEncodeAsTheProtocolSays() {
        var buffer = ByteBuffer()
        MemcachedRequest.set(key: "k", value: [1, 2], expiry: 60).encode(into: &buffer)
        MemcachedRequest.get(["a", "b"]).encode(into: &buffer)
        #expect(buffer.readBytes(length: buffer.readableBytes) == Array("set k 0 60 2\r\n".utf8) + [1, 2] + Array("\r\nget a b\r\n".utf8))
        #expect(MemcachedRequest.isValidKey("thaw:abc:0"))
        #expect(!MemcachedRequest.isValidKey("has space"))
        #expect(!MemcachedRequest.isValidKey(String(repeating: "k", count: 251)))
    }
}
