import Foundation
public import ThawTar

/// Runs a byte source on a thread of its own, a few buffers ahead of its reader.
///
/// A push flattens each layer on one thread. Inflating the layer and computing both of its
/// digests on that same thread made it the bound of the whole push; with the layer stream on
/// its own thread, inflating and hashing overlap the tar parsing and the layout.
///
/// The upstream belongs to the producing thread from `init` on: nothing else touches it. An
/// error the upstream throws reaches the reader after every byte read before it. A reader that
/// stops early lets the producer go at its next buffer; the producer keeps the upstream and the
/// buffers alive until it has stopped.
public final class ReadAheadSource: ByteSource {
    /// What the two threads share, always under `condition`.
    private final class Pipe: @unchecked Sendable {
        let condition = NSCondition()
        let buffers: [UnsafeMutableRawBufferPointer]
        /// Buffers the producer may fill.
        var free: [Int]
        /// Filled buffers in stream order, with their byte counts.
        var filled: [(buffer: Int, count: Int)] = []
        var ended = false
        var failure: (any Error)?
        var readerGone = false

        init(count: Int, size: Int) {
            buffers = (0..<count).map { _ in .allocate(byteCount: size, alignment: 64) }
            free = Array(0..<count)
        }

        deinit { buffers.forEach { $0.deallocate() } }
    }

    /// Passes the upstream to the producing thread, which alone uses it.
    private struct Handover: @unchecked Sendable {
        let upstream: any ByteSource
    }

    private let pipe: Pipe
    /// The buffer being read, and how far.
    private var current: (buffer: Int, count: Int)?
    private var position = 0
    /// Bytes handed to the reader so far.
    public private(set) var count: UInt64 = 0

    /// - Parameters:
    ///   - buffers: how many buffers the producer may fill ahead of the reader.
    ///   - bufferSize: bytes in each.
    public init(_ upstream: any ByteSource, buffers: Int = 4, bufferSize: Int = 1 << 18) {
        precondition(buffers > 0 && bufferSize > 0)
        let pipe = Pipe(count: buffers, size: bufferSize)
        self.pipe = pipe
        let handover = Handover(upstream: upstream)
        let thread = Thread { Self.produce(from: handover.upstream, into: pipe) }
        thread.name = "thaw-read-ahead"
        thread.start()
    }

    deinit {
        pipe.condition.lock()
        pipe.readerGone = true
        pipe.condition.broadcast()
        pipe.condition.unlock()
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buffer.count > 0 else { return 0 }
        if current == nil || position == current!.count {
            guard let next = try nextBuffer() else { return 0 }
            current = next
            position = 0
        }
        let (index, filled) = current!
        let n = min(buffer.count, filled - position)
        buffer.baseAddress!.copyMemory(from: pipe.buffers[index].baseAddress! + position, byteCount: n)
        position += n
        count += UInt64(n)
        return n
    }

    /// Gives back the buffer just read and waits for the next one.
    ///
    /// - Returns: `nil` at the end of the stream.
    private func nextBuffer() throws -> (buffer: Int, count: Int)? {
        pipe.condition.lock()
        defer { pipe.condition.unlock() }
        if let current {
            pipe.free.append(current.buffer)
            self.current = nil
            pipe.condition.broadcast()
        }
        while pipe.filled.isEmpty && !pipe.ended && pipe.failure == nil {
            pipe.condition.wait()
        }
        if !pipe.filled.isEmpty { return pipe.filled.removeFirst() }
        if let failure = pipe.failure { throw failure }
        return nil
    }

    private static func produce(from upstream: any ByteSource, into pipe: Pipe) {
        let size = pipe.buffers[0].count
        while true {
            pipe.condition.lock()
            while pipe.free.isEmpty && !pipe.readerGone { pipe.condition.wait() }
            if pipe.readerGone {
                pipe.condition.unlock()
                return
            }
            let index = pipe.free.removeLast()
            pipe.condition.unlock()

            // Fills the buffer, keeping what arrived before an error or the end.
            let buffer = pipe.buffers[index]
            var n = 0
            var failure: (any Error)?
            var ended = false
            while n < size {
                do {
                    let got = try upstream.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[n...]))
                    if got == 0 { ended = true; break }
                    n += got
                } catch {
                    failure = error
                    break
                }
            }

            pipe.condition.lock()
            if n > 0 { pipe.filled.append((index, n)) } else { pipe.free.append(index) }
            let done = failure != nil || ended
            if let failure { pipe.failure = failure } else if ended { pipe.ended = true }
            pipe.condition.broadcast()
            pipe.condition.unlock()
            if done { return }
        }
    }
}
