import Testing
import ThawNBDProtocol

@Suite struct SimpleReplyTests {
    @Test func headerIsMagicErrorCookie() {
        #expect(NBDSimpleReply.header(cookie: 0x0102_0304_0506_0708) == [
            0x67, 0x44, 0x66, 0x98, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8,
        ])
        #expect(NBDSimpleReply.header(cookie: 1, error: .io) == [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1])
        #expect(NBDSimpleReply.read(cookie: 2, data: [9, 8]) == [0x67, 0x44, 0x66, 0x98, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 9, 8])
    }

    @Test func errorNumbersAreTheProtocols() {
        let codes: [(NBDErrorCode, UInt32)] = [
            (.notPermitted, 1), (.io, 5), (.noMemory, 12), (.invalid, 22), (.noSpace, 28), (.overflow, 75),
            (.notSupported, 95), (.shutdown, 108),
        ]
        for (code, value) in codes { #expect(code.rawValue == value) }
    }

    @Test func flagValuesAreTheProtocols() {
        #expect(NBDTransmissionFlags.thawExport.rawValue == 0x0103)
        #expect(NBDHandshake.handshakeFlags.rawValue == 3)
        #expect(NBDOptionReplyType.errorUnknown.rawValue == 0x8000_0006)
        #expect(NBDOptionReplyType.errorUnknown.isError)
        #expect(!NBDOptionReplyType.ack.isError)
    }
}
