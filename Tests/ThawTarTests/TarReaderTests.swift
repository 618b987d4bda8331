import Testing
@testable import ThawTar

/// Reads every entry of an in-memory archive, with the content of regular files.
func readAll(_ bytes: [UInt8]) throws -> [(TarEntry, [UInt8])] {
    let reader = TarReader(source: MemorySource(bytes))
    var result: [(TarEntry, [UInt8])] = []
    while let entry = try reader.nextEntry() {
        var data = [UInt8](repeating: 0, count: Int(entry.size))
        var filled = 0
        while filled < data.count {
            let n = try data.withUnsafeMutableBytes { try reader.readData(into: UnsafeMutableRawBufferPointer(rebasing: $0[filled...])) }
            filled += n
        }
        result.append((entry, data))
    }
    return result
}

/// A header block with the given fields and a correct checksum (GNU or ustar magic).
func headerBlock(name: String, typeflag: UInt8 = UInt8(ascii: "0"), size: [UInt8]? = nil, sizeValue: UInt64 = 0,
                 gnu: Bool = false, linkName: String = "") -> [UInt8] {
    var block = [UInt8](repeating: 0, count: 512)
    for (i, b) in name.utf8.enumerated() { block[i] = b }
    for (i, b) in "0000644\0".utf8.enumerated() { block[100 + i] = b }
    for (i, b) in "0000000\0".utf8.enumerated() { block[108 + i] = b; block[116 + i] = b }
    let sizeField = size ?? Array((String(repeating: "0", count: max(0, 11 - String(sizeValue, radix: 8).count)) + String(sizeValue, radix: 8) + "\0").utf8)
    for (i, b) in sizeField.enumerated() { block[124 + i] = b }
    for (i, b) in "00000000000\0".utf8.enumerated() { block[136 + i] = b }
    block[156] = typeflag
    for (i, b) in linkName.utf8.enumerated() { block[157 + i] = b }
    let magic = gnu ? "ustar  \0" : "ustar\u{0}00"
    for (i, b) in magic.utf8.enumerated() { block[257 + i] = b }
    for i in 148..<156 { block[i] = UInt8(ascii: " ") }
    let sum = block.reduce(0) { $0 + Int($1) }
    for (i, b) in (String(repeating: "0", count: 6 - String(sum, radix: 8).count) + String(sum, radix: 8) + "\0 ").utf8.enumerated() {
        block[148 + i] = b
    }
    return block
}

func padded(_ data: [UInt8]) -> [UInt8] { data + [UInt8](repeating: 0, count: (512 - data.count % 512) % 512) }

@Suite struct TarReaderTests {
    @Test func roundTripsEveryKind() throws {
        var writer = TarWriter()
        let longPath = String(repeating: "directory/", count: 20) + "file.txt"
        let entries: [(TarEntry, [UInt8])] = [
            (TarEntry(kind: .directory, path: Array("etc".utf8), permissions: 0o755), []),
            (TarEntry(kind: .regular, path: Array("etc/hosts".utf8), permissions: 0o4755, uid: 100_000, gid: 70_000,
                      size: 5, modificationTime: Timestamp(seconds: 1_700_000_000, nanoseconds: 123_456_789),
                      extendedAttributes: ["security.capability": [1, 2, 3, 0, 255], "user.note": Array("hi".utf8)]),
             Array("hello".utf8)),
            (TarEntry(kind: .regular, path: Array(longPath.utf8), size: 1000), [UInt8](repeating: 7, count: 1000)),
            (TarEntry(kind: .symbolicLink, path: Array("link".utf8), linkName: Array(String(repeating: "t", count: 300).utf8)), []),
            (TarEntry(kind: .hardLink, path: Array("hard".utf8), linkName: Array("etc/hosts".utf8)), []),
            (TarEntry(kind: .characterDevice, path: Array("null".utf8), deviceMajor: 1, deviceMinor: 3), []),
            (TarEntry(kind: .blockDevice, path: Array("nvme".utf8), deviceMajor: 259, deviceMinor: 300), []),
            (TarEntry(kind: .fifo, path: Array("fifo".utf8)), []),
        ]
        for (entry, data) in entries { writer.append(entry, data: data) }
        writer.finish()
        let read = try readAll(writer.bytes)
        #expect(read.count == entries.count)
        for ((expected, expectedData), (actual, actualData)) in zip(entries, read) {
            var want = expected
            want.size = UInt64(expectedData.count)
            #expect(actual == want, "entry \(expected.displayPath)")
            #expect(actualData == expectedData)
        }
    }

    @Test func readsGNULongNamesAndLinks() throws {
        let name = String(repeating: "n", count: 150)
        let link = String(repeating: "l", count: 140)
        var bytes: [UInt8] = []
        bytes += headerBlock(name: "././@LongLink", typeflag: UInt8(ascii: "L"), sizeValue: UInt64(name.utf8.count + 1), gnu: true)
        bytes += padded(Array(name.utf8) + [0])
        bytes += headerBlock(name: "././@LongLink", typeflag: UInt8(ascii: "K"), sizeValue: UInt64(link.utf8.count + 1), gnu: true)
        bytes += padded(Array(link.utf8) + [0])
        bytes += headerBlock(name: String(name.prefix(99)), typeflag: UInt8(ascii: "2"), gnu: true, linkName: String(link.prefix(99)))
        bytes += [UInt8](repeating: 0, count: 1024)
        let read = try readAll(bytes)
        #expect(read.count == 1)
        #expect(read[0].0.displayPath == name)
        #expect(String(decoding: read[0].0.linkName, as: UTF8.self) == link)
        #expect(read[0].0.kind == .symbolicLink)
    }

    @Test func readsBase256Sizes() throws {
        // A size of 9 GiB cannot be written in 11 octal digits; GNU tar uses base-256.
        var field = [UInt8](repeating: 0, count: 12)
        field[0] = 0x80
        let size: UInt64 = 9 << 30
        for i in 0..<8 { field[11 - i] = UInt8(truncatingIfNeeded: size >> (8 * UInt64(i))) }
        let block = headerBlock(name: "big", size: field)
        let parsed = try block.withUnsafeBytes { try TarHeader.parse($0) }
        #expect(parsed.size == size)
    }

    @Test func readsPaxSizesAndGlobalHeaders() throws {
        var bytes: [UInt8] = []
        let global = TarWriter.paxRecord(key: "uid", value: Array("4242".utf8))
        bytes += headerBlock(name: "global", typeflag: UInt8(ascii: "g"), sizeValue: UInt64(global.count))
        bytes += padded(global)
        let local = TarWriter.paxRecord(key: "size", value: Array("3".utf8)) + TarWriter.paxRecord(key: "mtime", value: Array("-1.5".utf8))
        bytes += headerBlock(name: "pax", typeflag: UInt8(ascii: "x"), sizeValue: UInt64(local.count))
        bytes += padded(local)
        bytes += headerBlock(name: "file", sizeValue: 0)
        bytes += padded(Array("abc".utf8))
        bytes += [UInt8](repeating: 0, count: 1024)
        let read = try readAll(bytes)
        #expect(read.count == 1)
        #expect(read[0].0.uid == 4242)
        #expect(read[0].0.size == 3)
        #expect(read[0].1 == Array("abc".utf8))
        #expect(read[0].0.modificationTime == Timestamp(seconds: -2, nanoseconds: 500_000_000))
    }

    @Test func refusesABadChecksum() throws {
        var block = headerBlock(name: "file")
        block[0] = UInt8(ascii: "g")
        #expect(throws: TarError.self) { try readAll(block + [UInt8](repeating: 0, count: 1024)) }
        do {
            _ = try readAll(block)
        } catch let error as TarError {
            #expect(error.code == .badChecksum)
            #expect(error.entry == "gile")
        }
    }

    @Test func refusesGarbageInANumericField() throws {
        let block = headerBlock(name: "weird", size: Array("12x45\0".utf8))
        do {
            _ = try readAll(block)
            Issue.record("garbage size accepted")
        } catch let error as TarError {
            #expect(error.code == .invalidField)
            #expect(error.entry == "weird")
            #expect(error.message.contains("size"))
        }
    }

    @Test func refusesATruncatedStream() throws {
        var writer = TarWriter()
        writer.append(TarEntry(kind: .regular, path: Array("data".utf8), size: 2000), data: [UInt8](repeating: 1, count: 2000))
        let cut = Array(writer.bytes.prefix(512 + 1000))
        do {
            _ = try readAll(cut)
            Issue.record("truncated stream accepted")
        } catch let error as TarError {
            #expect(error.code == .truncated)
            #expect(error.entry == "data")
        }
        // Cut inside a header.
        #expect(throws: TarError.self) { try readAll(Array(writer.bytes.prefix(300))) }
    }

    @Test func refusesSparseAndUnknownTypes() throws {
        for flag in [UInt8(ascii: "S"), UInt8(ascii: "Z")] {
            do {
                _ = try readAll(headerBlock(name: "odd", typeflag: flag) + [UInt8](repeating: 0, count: 1024))
                Issue.record("type \(flag) accepted")
            } catch let error as TarError {
                #expect(error.code == .unsupportedType)
            }
        }
    }

    @Test func refusesMalformedPaxRecords() throws {
        for body in ["5 a=b\n", "10 nokey\n", "abc", "3 =\n"] {
            #expect(throws: TarError.self) { try PaxRecords.parse(Array(body.utf8), entry: "x") }
        }
        let ok = try PaxRecords.parse(Array("9 path=a\n".utf8), entry: nil)
        #expect(ok.count == 1 && ok[0].key == "path" && ok[0].value == Array("a".utf8))
    }
}
