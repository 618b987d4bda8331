import Foundation
import Testing
import ThawImage
import ThawTar
import ThawTestSupport

/// Hands out its bytes a few at a time, so a decompressor meets every boundary: inside the
/// header, inside a block and inside the trailer.
final class TricklingSource: ByteSource {
    private let bytes: [UInt8]
    private let step: Int
    private var position = 0

    init(_ bytes: [UInt8], step: Int) {
        self.bytes = bytes
        self.step = step
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = min(buffer.count, step, bytes.count - position)
        guard n > 0 else { return 0 }
        bytes.withUnsafeBytes { buffer.baseAddress!.copyMemory(from: $0.baseAddress! + position, byteCount: n) }
        position += n
        return n
    }
}

@Suite struct GzipSourceTests {
    /// Compresses `bytes` with the real `gzip` tool. The header names the file, so a stream
    /// handed over a few bytes at a time splits the header inside the name.
    func gzip(_ bytes: [UInt8], level: Int = 6) throws -> [UInt8] {
        try TestSupport.withTemporaryDirectory { dir in
            try Data(bytes).write(to: URL(fileURLWithPath: "\(dir)/layer.tar"))
            try TestSupport.run("sh", ["-c", "gzip -\(level) -c '\(dir)/layer.tar' > '\(dir)/layer.tar.gz'"])
            let compressed = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(dir)/layer.tar.gz")))
            #expect(compressed.count > 3 && compressed[3] & 0x08 != 0, "gzip wrote no file name")
            return compressed
        }
    }

    /// Text-like bytes that compress, with stretches of noise that do not.
    func sample(_ count: Int, seed: UInt64) -> [UInt8] {
        var generator = SeededGenerator(seed: seed)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        let words = ["thaw ", "chunk ", "layer ", "image ", "\n", "store ", "ext4 "]
        while bytes.count < count {
            if generator.next() % 5 == 0 {
                bytes += generator.bytes(Int(generator.next() % 300))
            } else {
                bytes += Array(words[Int(generator.next() % UInt64(words.count))].utf8)
            }
        }
        return Array(bytes.prefix(count))
    }

    func inflate(_ compressed: [UInt8], inputStep: Int = 1 << 20, outputSize: Int = 1 << 16) throws -> [UInt8] {
        let source = try GzipSource(TricklingSource(compressed, step: inputStep))
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: outputSize, alignment: 1)
        defer { buffer.deallocate() }
        var out: [UInt8] = []
        while true {
            let n = try source.read(into: buffer)
            if n == 0 { return out }
            out += buffer.prefix(n)
        }
    }

    func expectCorrupt(_ compressed: [UInt8], mentioning words: String) {
        do {
            _ = try inflate(compressed)
            Issue.record("corrupt gzip stream accepted")
        } catch let error as ImageError {
            #expect(error.code == .corruptCompression)
            #expect("\(error)".contains(words), "\(error)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test(arguments: [(1 << 20, 1 << 16), (7, 1 << 16), (1 << 20, 5), (3, 4096), (1, 1)])
    func readsWhatGzipWrote(inputStep: Int, outputSize: Int) throws {
        let plain = sample(outputSize == 1 ? 40_000 : 600_000, seed: 7)
        for level in [1, 9] {
            #expect(try inflate(try gzip(plain, level: level), inputStep: inputStep, outputSize: outputSize) == plain)
        }
    }

    @Test func readsEveryMemberAndSkipsZeroPadding() throws {
        let first = sample(100_000, seed: 1)
        let second = sample(50_000, seed: 2)
        let stream = try gzip(first) + gzip(second)
        #expect(try inflate(stream) == first + second)
        #expect(try inflate(stream, inputStep: 11) == first + second)
        #expect(try inflate(stream + [UInt8](repeating: 0, count: 512)) == first + second)
        #expect(try inflate(try gzip([])) == [])
    }

    @Test func refusesDataAfterTheStream() throws {
        expectCorrupt(try gzip(sample(10_000, seed: 3)) + Array("trailing".utf8), mentioning: "after the end")
    }

    @Test func refusesATruncatedStream() throws {
        let whole = try gzip(sample(200_000, seed: 4))
        for cut in [1, 5, 9, whole.count / 2] {
            expectCorrupt(Array(whole.dropLast(cut)), mentioning: "truncated")
        }
        expectCorrupt([], mentioning: "truncated")
    }

    @Test func refusesAWrongChecksumOrLength() throws {
        let whole = try gzip(sample(50_000, seed: 5))
        var badCRC = whole
        badCRC[whole.count - 8] ^= 0x01
        expectCorrupt(badCRC, mentioning: "CRC-32 or length")
        var badLength = whole
        badLength[whole.count - 4] ^= 0x01
        expectCorrupt(badLength, mentioning: "CRC-32 or length")
    }

    @Test func refusesABrokenHeaderOrBody() throws {
        let whole = try gzip(sample(50_000, seed: 6))
        var badMethod = whole
        badMethod[2] = 7
        expectCorrupt(badMethod, mentioning: "gzip data is corrupt")
        var badBody = whole
        for i in 20..<60 { badBody[i] = 0xff }
        expectCorrupt(badBody, mentioning: "gzip data is corrupt")
    }
}
