import Crypto
import _CryptoExtras
import Foundation

/// The key that decrypts one chunk: SHA-256(salt ‖ plaintext). Kept only in sealed key tables.
public struct ChunkKey: Hashable, Sendable {
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws {
        guard bytes.count == 32 else { throw SealError(.invalidValue, "a chunk key is 32 bytes, not \(bytes.count)") }
        self.bytes = bytes
    }

    init(unchecked bytes: [UInt8]) { self.bytes = bytes }
}

/// A chunk after sealing: what goes to the store (name, ciphertext) and what goes to the sealed
/// key table (key).
public struct SealedChunk: Sendable {
    public var name: ChunkName
    public var key: ChunkKey
    public var ciphertext: [UInt8]
}

/// Convergent encryption of chunks (see docs/chunk-format.md).
///
/// key = SHA-256(salt ‖ plaintext); ciphertext = AES-256-CTR(key, IV = 0); name = SHA-256(ciphertext).
/// A zero IV is safe because a key is a function of the plaintext: each key encrypts exactly one
/// plaintext. Integrity comes from the name, checked on every read, not from an AEAD tag. CTR mode
/// lets a reader decrypt any byte range of a chunk without the rest.
public enum ChunkSealer {
    /// The convergent key of `plaintext` under `salt`.
    public static func key(for plaintext: UnsafeRawBufferPointer, salt: Salt) -> ChunkKey {
        var hasher = SHA256()
        hasher.update(data: salt.bytes)
        hasher.update(bufferPointer: plaintext)
        return ChunkKey(unchecked: Array(hasher.finalize()))
    }

    public static func key(for plaintext: [UInt8], salt: Salt) -> ChunkKey {
        plaintext.withUnsafeBytes { key(for: $0, salt: salt) }
    }

    /// Seals `plaintext` under `salt`.
    public static func seal(_ plaintext: UnsafeRawBufferPointer, salt: Salt) -> SealedChunk {
        let key = key(for: plaintext, salt: salt)
        let ciphertext = crypt(plaintext, key: key, blockIndex: 0)
        return SealedChunk(name: ChunkName.of(ciphertext), key: key, ciphertext: ciphertext)
    }

    public static func seal(_ plaintext: [UInt8], salt: Salt) -> SealedChunk {
        plaintext.withUnsafeBytes { seal($0, salt: salt) }
    }

    /// The ciphertext of a chunk whose plaintext was rebuilt (from a delta), encrypted with the
    /// key `expected` gives, or nil when it does not have the name `expected` gives. One hash,
    /// where `seal` takes two: the key need not be derived again, since a ciphertext with the
    /// chunk's name decrypts under the chunk's key to the chunk's plaintext.
    public static func encrypt(_ plaintext: [UInt8], as expected: ChunkRef) -> [UInt8]? {
        let ciphertext = plaintext.withUnsafeBytes { crypt($0, key: expected.key, blockIndex: 0) }
        return expected.name.matches(ciphertext) ? ciphertext : nil
    }

    /// Decrypts a whole chunk after checking it against its name.
    ///
    /// - Throws: `SealError.chunkMismatch` when the bytes are not the named chunk.
    public static func open(_ ciphertext: [UInt8], name: ChunkName, key: ChunkKey) throws -> [UInt8] {
        guard name.matches(ciphertext) else {
            throw SealError(.chunkMismatch, "chunk \(name) does not match its name (SHA-256 is \(ChunkName.of(ciphertext)))")
        }
        return ciphertext.withUnsafeBytes { crypt($0, key: key, blockIndex: 0) }
    }

    /// Decrypts `ciphertext[range]` alone (the caller has verified the chunk).
    public static func decrypt(_ ciphertext: [UInt8], range: Range<Int>, key: ChunkKey) -> [UInt8] {
        var plain: [UInt8] = []
        decrypt(ciphertext, range: range, key: key, appendingTo: &plain)
        return plain
    }

    /// Decrypts `ciphertext[range]` alone onto the end of `output`, with no copy in between: the
    /// serving path assembles a read's bytes this way.
    public static func decrypt(_ ciphertext: [UInt8], range: Range<Int>, key: ChunkKey, appendingTo output: inout [UInt8]) {
        decrypt(ciphertext, range: range, key: key) { output.append(contentsOf: $0) }
    }

    /// Decrypts `ciphertext[range]` alone and lends the plaintext to `body`, which copies it
    /// wherever the bytes go (a read's array, a network buffer): one copy, no array between.
    public static func decrypt<Result>(_ ciphertext: [UInt8], range: Range<Int>, key: ChunkKey,
                                       _ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        let firstBlock = range.lowerBound / 16
        let start = firstBlock * 16
        let plain = ciphertext.withUnsafeBytes {
            cryptData(UnsafeRawBufferPointer(rebasing: $0[start..<range.upperBound]), key: key, blockIndex: UInt64(firstBlock))
        }
        return try plain.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[(range.lowerBound - start)...])) }
    }

    /// Decrypts `ciphertext[range]` alone into `output` (which holds `range.count` bytes): the
    /// serving path decrypts straight into a network reply this way, with no copy at all.
    public static func decrypt(_ ciphertext: [UInt8], range: Range<Int>, key: ChunkKey, into output: UnsafeMutableRawBufferPointer) {
        precondition(range.lowerBound >= 0 && range.upperBound <= ciphertext.count && output.count >= range.count)
        ciphertext.withUnsafeBytes { bytes in
            CTRStream.crypt(UnsafeRawBufferPointer(rebasing: bytes[range]), into: output, key: key, offset: range.lowerBound)
        }
    }

    /// AES-256-CTR starting at counter block `blockIndex` (the 128-bit big-endian counter of IV 0).
    static func crypt(_ input: UnsafeRawBufferPointer, key: ChunkKey, blockIndex: UInt64) -> [UInt8] {
        [UInt8](cryptData(input, key: key, blockIndex: blockIndex))
    }

    static func cryptData(_ input: UnsafeRawBufferPointer, key: ChunkKey, blockIndex: UInt64) -> Data {
        var counter = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 { counter[15 - i] = UInt8(truncatingIfNeeded: blockIndex >> (8 * UInt64(i))) }
        do {
            let nonce = try AES._CTR.Nonce(nonceBytes: counter)
            return try AES._CTR.encrypt(input, using: SymmetricKey(data: key.bytes), nonce: nonce)
        } catch {
            // Only parameter sizes can fail here, and they are fixed above.
            preconditionFailure("AES-256-CTR with a 32-byte key and 16-byte counter failed: \(error)")
        }
    }
}
