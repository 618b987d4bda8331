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
        let firstBlock = range.lowerBound / 16
        let start = firstBlock * 16
        let plain = ciphertext.withUnsafeBytes {
            crypt(UnsafeRawBufferPointer(rebasing: $0[start..<range.upperBound]), key: key, blockIndex: UInt64(firstBlock))
        }
        return Array(plain[(range.lowerBound - start)...])
    }

    /// AES-256-CTR starting at counter block `blockIndex` (the 128-bit big-endian counter of IV 0).
    static func crypt(_ input: UnsafeRawBufferPointer, key: ChunkKey, blockIndex: UInt64) -> [UInt8] {
        var counter = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 { counter[15 - i] = UInt8(truncatingIfNeeded: blockIndex >> (8 * UInt64(i))) }
        do {
            let nonce = try AES._CTR.Nonce(nonceBytes: counter)
            let output = try AES._CTR.encrypt(input, using: SymmetricKey(data: key.bytes), nonce: nonce)
            return [UInt8](output)
        } catch {
            // Only parameter sizes can fail here, and they are fixed above.
            preconditionFailure("AES-256-CTR with a 32-byte key and 16-byte counter failed: \(error)")
        }
    }
}
