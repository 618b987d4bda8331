/// Bytes received and not yet consumed.
///
/// Reads advance an index instead of removing from the front; the storage is compacted only
/// when most of it is consumed, so consuming costs nothing per message.
struct InputBuffer: Sendable {
    private var storage: [UInt8] = []
    private var start = 0

    var count: Int { storage.count - start }

    mutating func append(_ bytes: some Sequence<UInt8>) {
        if start > 0 && start >= storage.count / 2 {
            storage.removeFirst(start)
            start = 0
        }
        storage.append(contentsOf: bytes)
    }

    /// The next `length` bytes without consuming them, or nil when fewer are buffered.
    func peek(_ length: Int) -> ArraySlice<UInt8>? {
        guard count >= length else { return nil }
        return storage[start..<(start + length)]
    }

    /// Consumes and returns the next `length` bytes, or nil when fewer are buffered.
    mutating func take(_ length: Int) -> ArraySlice<UInt8>? {
        guard let bytes = peek(length) else { return nil }
        start += length
        return bytes
    }

    /// Consumes up to `length` bytes and says how many.
    mutating func skip(upTo length: Int) -> Int {
        let skipped = min(length, count)
        start += skipped
        return skipped
    }

    /// Consumes everything buffered.
    mutating func takeAll() -> [UInt8] {
        defer {
            storage = []
            start = 0
        }
        return Array(storage[start...])
    }
}
