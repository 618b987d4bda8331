import Crypto
import Foundation
import ThawSeal

/// `thaw-bench seal [SECONDS]`: sealing throughput on one core over 512 KiB chunks, with the
/// parts (SHA-256, AES-256-CTR) measured the same way. Prints one line per figure,
/// `name MB/s`, for Benchmarks/push-bench.py to read.
@main
enum ThawBench {
    static func main() throws {
        let arguments = CommandLine.arguments.dropFirst()
        guard arguments.first == "seal" else {
            FileHandle.standardError.write(Data("usage: thaw-bench seal [SECONDS]\n".utf8))
            exit(2)
        }
        let seconds = Double(arguments.dropFirst().first ?? "3") ?? 3
        MallocTuning.keepLargeBuffers()
        let chunkSize = 512 * 1024
        var generator = SystemRandomNumberGenerator()
        // Several distinct chunks, so nothing is served from a tiny cache of one buffer.
        let chunks = (0..<8).map { _ in (0..<chunkSize).map { _ in UInt8.random(in: 0...255, using: &generator) } }
        let salt = Salt(root: .initial, replica: 0)
        var sink: UInt8 = 0

        let seal = measure(seconds: seconds, bytesPerRound: chunkSize) { round in
            let sealed = ChunkSealer.seal(chunks[round % chunks.count], salt: salt)
            sink ^= sealed.name.bytes[0]
        }
        let sha = measure(seconds: seconds, bytesPerRound: chunkSize) { round in
            sink ^= SHA256.hash(data: chunks[round % chunks.count]).withUnsafeBytes { $0[0] }
        }
        let key = ChunkSealer.key(for: chunks[0], salt: salt)
        let aes = measure(seconds: seconds, bytesPerRound: chunkSize) { round in
            let plain = chunks[round % chunks.count]
            // Decrypting a range from 0 is the full CTR pass, through the same code path as sealing.
            sink ^= ChunkSealer.decrypt(plain, range: 0..<plain.count, key: key)[0]
        }
        print("seal \(format(seal))")
        print("sha256 \(format(sha))")
        print("aes-256-ctr \(format(aes))")
        if sink == 0x5a { print("") }  // keeps the work observable
    }

    /// Runs `body` for `seconds`; returns MB/s (10^6 bytes).
    static func measure(seconds: Double, bytesPerRound: Int, _ body: (Int) -> Void) -> Double {
        for round in 0..<8 { body(round) }  // warm up
        let clock = ContinuousClock()
        let start = clock.now
        var rounds = 0
        while true {
            for _ in 0..<16 {
                body(rounds)
                rounds += 1
            }
            let elapsed = clock.now - start
            let s = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            if s >= seconds { return Double(rounds * bytesPerRound) / s / 1e6 }
        }
    }

    static func format(_ value: Double) -> String { String(format: "%.1f", value) }
}
