import ThawBinary
import Crypto
import Foundation
import Testing
import ThawSeal
import ThawTestSupport

/// Convergent chunk sealing, checked against the documented vectors and against real tools.
@Suite struct ChunkSealerTests {
    let salt = Salt(root: .initial, replica: 0)

    /// The vectors in docs/chunk-format.md, computed there with sha256sum and openssl.
    @Test func matchesTheDocumentedVectors() throws {
        #expect(Hex.encode(salt.bytes) == "d0d8e2ccf417b71283b53ef2eee393a656bccc1ba40a5b8614473d3c56932735")
        let abc = ChunkSealer.seal(Array("abc".utf8), salt: salt)
        #expect(Hex.encode(abc.key.bytes) == "3035ef2e876b8242f126992f7a96cd8c4528b4407759d906083e23da07bb980e")
        #expect(Hex.encode(abc.ciphertext) == "7eaa8d")
        #expect(abc.name.hex == "72fd40b109cbb2b8259b0b2632d20ac1b985df798e019783df1d37dc7785ef56")
        let pattern = (0..<(512 * 1024)).map { UInt8($0 % 251) }
        let sealed = ChunkSealer.seal(pattern, salt: salt)
        #expect(Hex.encode(sealed.key.bytes) == "e047644b8821ba8458f98b53a0c8d378e289fff8289e92e654bee1fb773b05a6")
        #expect(Hex.encode(sealed.ciphertext.prefix(16)) == "8885393611b12ded3b92cda7474a065d")
        #expect(sealed.name.hex == "845d263c42b04114facfd9926d4582e91eb918bb07ee8f52ad1603b4639dccbb")
    }

    /// The format is not defined by our code alone: sha256sum and `openssl enc -aes-256-ctr`
    /// produce the same key, ciphertext and name for random chunks.
    @Test(arguments: [1, 4096, 512 * 1024 - 3, 512 * 1024])
    func agreesWithOpenSSLAndSha256sum(size: Int) throws {
        try TestSupport.withTemporaryDirectory { dir in
            var generator = SystemRandomNumberGenerator()
            let plaintext = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let sealed = ChunkSealer.seal(plaintext, salt: salt)
            try Data(salt.bytes + plaintext).write(to: URL(fileURLWithPath: dir + "/keyin"))
            try Data(plaintext).write(to: URL(fileURLWithPath: dir + "/plain"))
            let key = String(try TestSupport.run("sha256sum", [dir + "/keyin"]).output.prefix(64))
            #expect(key == Hex.encode(sealed.key.bytes))
            try TestSupport.run("openssl", ["enc", "-aes-256-ctr", "-K", key, "-iv", String(repeating: "0", count: 32),
                                            "-nosalt", "-in", dir + "/plain", "-out", dir + "/cipher"])
            let cipher = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/cipher")))
            #expect(cipher == sealed.ciphertext)
            let name = String(try TestSupport.run("sha256sum", [dir + "/cipher"]).output.prefix(64))
            #expect(name == sealed.name.hex)
        }
    }

    @Test func identicalPlaintextSealsIdenticallyAndSaltsSeparate() {
        let plaintext = Array(repeating: UInt8(7), count: 1000)
        let a = ChunkSealer.seal(plaintext, salt: salt)
        let b = ChunkSealer.seal(plaintext, salt: salt)
        #expect(a.name == b.name && a.ciphertext == b.ciphertext)
        let otherReplica = ChunkSealer.seal(plaintext, salt: Salt(root: .initial, replica: 1))
        let otherRoot = ChunkSealer.seal(plaintext, salt: Salt(root: try! RootID("r0002"), replica: 0))
        #expect(Set([a.name, otherReplica.name, otherRoot.name]).count == 3)
        #expect(a.ciphertext != plaintext)
    }

    @Test func opensAndRefusesBytesThatDoNotMatchTheName() throws {
        let plaintext = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let sealed = ChunkSealer.seal(plaintext, salt: salt)
        #expect(try ChunkSealer.open(sealed.ciphertext, name: sealed.name, key: sealed.key) == plaintext)
        var corrupt = sealed.ciphertext
        corrupt[12345] ^= 1
        let error = #expect(throws: SealError.self) { try ChunkSealer.open(corrupt, name: sealed.name, key: sealed.key) }
        #expect(error?.kind == .chunkMismatch)
        #expect(error?.message.contains(sealed.name.hex) == true)
    }

    /// A rebuilt plaintext re-encrypted under the manifest's key gives the sealed ciphertext
    /// exactly when it is the sealed plaintext.
    @Test func aRebuiltChunkIsEncryptedOnlyAsTheChunkItNames() {
        let plaintext = (0..<65_536).map { UInt8(truncatingIfNeeded: $0 &* 17) }
        let sealed = ChunkSealer.seal(plaintext, salt: salt)
        let ref = ChunkRef(name: sealed.name, key: sealed.key)
        #expect(ChunkSealer.encrypt(plaintext, as: ref) == sealed.ciphertext)
        var other = plaintext
        other[40_000] ^= 0x80
        #expect(ChunkSealer.encrypt(other, as: ref) == nil)
        #expect(ChunkSealer.encrypt(Array(plaintext.dropLast()), as: ref) == nil)
    }

    /// CTR lets a reader decrypt any range alone; it must equal the same range of the whole.
    @Test func decryptsAnyRangeAlone() {
        let plaintext = (0..<(64 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 3) }
        let sealed = ChunkSealer.seal(plaintext, salt: salt)
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let start = Int.random(in: 0..<plaintext.count, using: &generator)
            let end = Int.random(in: start...plaintext.count, using: &generator)
            #expect(ChunkSealer.decrypt(sealed.ciphertext, range: start..<end, key: sealed.key) == Array(plaintext[start..<end]))
        }
    }

    /// The serving path's libcrypto CTR, written into caller memory, against swift-crypto's
    /// (which sealed the chunk): every range, aligned or not, decrypts to the same bytes, and
    /// nothing is written past the range.
    @Test func decryptsIntoCallerMemoryAsSwiftCryptoDoes() {
        let plaintext = (0..<(512 * 1024)).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ 5) }
        let sealed = ChunkSealer.seal(plaintext, salt: salt)
        var generator = SystemRandomNumberGenerator()
        var ranges = [0..<0, 0..<1, 15..<17, 16..<32, 0..<plaintext.count, plaintext.count - 1..<plaintext.count]
        for _ in 0..<300 {
            let start = Int.random(in: 0..<plaintext.count, using: &generator)
            ranges.append(start..<Int.random(in: start...min(plaintext.count, start + 70_000), using: &generator))
        }
        for range in ranges {
            var output = [UInt8](repeating: 0xAA, count: range.count + 8)
            output.withUnsafeMutableBytes { buffer in
                ChunkSealer.decrypt(sealed.ciphertext, range: range, key: sealed.key,
                                    into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<range.count]))
            }
            #expect(Array(output.prefix(range.count)) == Array(plaintext[range]), "range \(range)")
            #expect(Array(output.suffix(8)) == [UInt8](repeating: 0xAA, count: 8))
        }
    }

    @Test func namesParseAndRefuseGarbage() throws {
        let name = ChunkName.of(Array("x".utf8))
        #expect(try ChunkName(hex: name.hex) == name)
        #expect(throws: SealError.self) { try ChunkName(hex: "abc") }
        #expect(throws: SealError.self) { try ChunkName(hex: String(repeating: "g", count: 64)) }
        #expect(throws: SealError.self) { try RootID("Bad/Root") }
        #expect(throws: SealError.self) { try Tenant("../etc") }
    }
}
