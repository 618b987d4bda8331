import COpenSSLCrypto

/// AES-256-CTR written straight into caller memory, through OpenSSL's libcrypto (Debian
/// libssl-dev).
///
/// swift-crypto offers CTR only as a call that returns a new `Data`, so serving a read would
/// allocate and copy every piece once more between decryption and the NBD reply; at warm-cache
/// speeds that copy is a fifth of the CPU. This writes the plaintext where the reply is
/// assembled. Sealing keeps swift-crypto; the tests check the two agree on every range.
enum CTRStream {
    /// XORs the keystream of `key` into `input`, writing `output` (same length). The keystream
    /// starts `offset` bytes into counter block 0 (IV zero), as the chunk format says.
    static func crypt(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, key: ChunkKey, offset: Int) {
        precondition(output.count >= input.count, "the output must hold the whole input")
        guard input.count > 0 else { return }
        guard let context = EVP_CIPHER_CTX_new() else { preconditionFailure("libcrypto cannot allocate a cipher context") }
        defer { EVP_CIPHER_CTX_free(context) }
        let firstBlock = UInt64(offset / 16)
        var counter = [UInt8](repeating: 0, count: 16)
        for i in 0..<8 { counter[15 - i] = UInt8(truncatingIfNeeded: firstBlock >> (8 * UInt64(i))) }
        let initialised = key.bytes.withUnsafeBufferPointer { keyBytes in
            EVP_EncryptInit_ex(context, EVP_aes_256_ctr(), nil, keyBytes.baseAddress, counter)
        }
        precondition(initialised == 1, "libcrypto cannot set up AES-256-CTR")
        var written: Int32 = 0
        // Within the first block: run the keystream past the bytes before `offset`.
        let skip = offset % 16
        if skip > 0 {
            var scratch = [UInt8](repeating: 0, count: 16)
            let zeros = [UInt8](repeating: 0, count: 16)
            precondition(EVP_EncryptUpdate(context, &scratch, &written, zeros, Int32(skip)) == 1)
        }
        // EVP takes int lengths: go in pieces well under 2 GiB.
        var done = 0
        while done < input.count {
            let piece = min(input.count - done, 1 << 30)
            let result = EVP_EncryptUpdate(context, output.baseAddress!.advanced(by: done).assumingMemoryBound(to: UInt8.self),
                                           &written, input.baseAddress!.advanced(by: done).assumingMemoryBound(to: UInt8.self),
                                           Int32(piece))
            precondition(result == 1 && Int(written) == piece, "AES-256-CTR failed in libcrypto")
            done += piece
        }
    }
}
