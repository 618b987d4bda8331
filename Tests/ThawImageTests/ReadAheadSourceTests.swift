import Foundation
import Synchronization
import Testing
import ThawImage
import ThawTar
import ThawTestSupport

/// Set once, from any thread.
final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}

/// An endless stream of counting bytes that notes how much was read and when it was freed.
final class EndlessSource: ByteSource, @unchecked Sendable {
    let produced = Atomic<Int>(0)
    let freed: Flag

    init(freed: Flag) { self.freed = freed }
    deinit { freed.set() }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let start = produced.load(ordering: .relaxed)
        for i in 0..<buffer.count { buffer[i] = UInt8(truncatingIfNeeded: start + i) }
        produced.add(buffer.count, ordering: .relaxed)
        return buffer.count
    }
}

/// Yields `bytes`, then fails.
final class FailingSource: ByteSource {
    struct Broken: Error, Equatable {}
    private let inner: MemorySource

    init(_ bytes: [UInt8]) { inner = MemorySource(bytes) }

    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = try inner.read(into: buffer)
        if n == 0 { throw Broken() }
        return n
    }
}

@Suite struct ReadAheadSourceTests {
    func readAll(_ source: some ByteSource, chunk: Int) throws -> [UInt8] {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 1)
        defer { buffer.deallocate() }
        var out: [UInt8] = []
        while true {
            let n = try source.read(into: buffer)
            if n == 0 { return out }
            out += buffer.prefix(n)
        }
    }

    @Test(arguments: [(1, 1, 1), (3, 7, 5), (4, 4096, 1000), (2, 100, 100), (4, 1 << 18, 65536)])
    func handsOnTheSameBytes(buffers: Int, bufferSize: Int, chunk: Int) throws {
        var generator = SeededGenerator(seed: UInt64(bufferSize))
        for size in [0, 1, bufferSize, bufferSize * buffers, 300_001] {
            let bytes = generator.bytes(size)
            let source = ReadAheadSource(MemorySource(bytes), buffers: buffers, bufferSize: bufferSize)
            let same = try readAll(source, chunk: chunk) == bytes
            #expect(same)
            #expect(source.count == UInt64(size))
            // The end stays the end.
            #expect(try readAll(source, chunk: chunk).isEmpty)
        }
    }

    @Test func anErrorArrivesAfterEveryByteBeforeIt() throws {
        var generator = SeededGenerator(seed: 9)
        let bytes = generator.bytes(10_000)
        let source = ReadAheadSource(FailingSource(bytes), buffers: 2, bufferSize: 4096)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1000, alignment: 1)
        defer { buffer.deallocate() }
        var got: [UInt8] = []
        do {
            while true {
                let n = try source.read(into: buffer)
                if n == 0 { Issue.record("the stream ended without its error"); break }
                got += buffer.prefix(n)
            }
        } catch is FailingSource.Broken {
            let same = got == bytes
            #expect(same, "\(got.count) bytes arrived before the error, of \(bytes.count)")
        }
        #expect(throws: FailingSource.Broken.self) { try source.read(into: buffer) }
    }

    @Test func aReaderThatStopsEarlyStopsTheProducer() throws {
        let freed = Flag()
        var upstream: EndlessSource? = EndlessSource(freed: freed)
        weak var watched = upstream
        var source: ReadAheadSource? = ReadAheadSource(upstream!, buffers: 3, bufferSize: 1000)
        upstream = nil
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2500, alignment: 1)
        defer { buffer.deallocate() }
        var consumed = 0
        for _ in 0..<4 { consumed += try source!.read(into: buffer) }
        // A read hands out at most the rest of one buffer.
        #expect(consumed == 4000)
        // The producer runs at most its free buffers ahead of the reader, however long it is left.
        Thread.sleep(forTimeInterval: 0.2)
        let produced = watched?.produced.load(ordering: .relaxed) ?? 0
        #expect(produced >= consumed && produced <= consumed + 3 * 1000)
        source = nil
        let deadline = Date().addingTimeInterval(10)
        while !freed.isSet && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        #expect(freed.isSet, "the producer kept its upstream after the reader went")
    }
}
