import Foundation
import Testing
import ThawNBD
import ThawTestSupport

/// The server against real clients: libnbd's nbdinfo and nbdcopy, qemu-img and qemu-io.
@Suite(.serialized, .timeLimit(.minutes(10))) struct ClientToolTests {
    @Test func nbdinfoReportsSizeAndReadOnly() async throws {
        try await Harness.withServer { server in
            let result = try await TestSupport.runOnOwnThread("nbdinfo", [Harness.uri(server)])
            #expect(result.status == 0, "\(result.output)")
            #expect(result.output.contains("export-size: \(TestImage.size)"))
            #expect(result.output.contains("is_read_only: true"))
            #expect(result.output.contains("can_flush: false"))
            #expect(result.output.contains("can_trim: false"))
            #expect(result.output.contains("can_zero: false"))
            #expect(result.output.contains("can_multi_conn: true"))
            #expect(result.output.contains("block_size_minimum: 1"))
            #expect(result.output.contains("block_size_preferred: 4096"))
            #expect(result.output.contains("block_size_maximum: 33554432"))
            // The default export is the disk.
            let size = try await TestSupport.runOnOwnThread("nbdinfo", ["--size", "nbd://127.0.0.1:\(server.port!)"])
            #expect(size.output.trimmingCharacters(in: .whitespacesAndNewlines) == "\(TestImage.size)")
        }
    }

    @Test func nbdinfoListsExports() async throws {
        try await Harness.withServer { server in
            let result = try await TestSupport.runOnOwnThread("nbdinfo", ["--list", "nbd://127.0.0.1:\(server.port!)"])
            #expect(result.status == 0, "\(result.output)")
            for name in ["disk", "small", "failing"] { #expect(result.output.contains("export=\"\(name)\""), "\(result.output)") }
            #expect(result.output.contains("export-size: \(TestImage.size)"))
            #expect(result.output.contains("export-size: 4096"))
            // The description comes with NBD_OPT_GO when asked for (the list carries names only).
            let small = try await TestSupport.runOnOwnThread("nbdinfo", [Harness.uri(server, "small")])
            #expect(small.output.contains("description: a small test disk"), "\(small.output)")
            let missing = try await TestSupport.runOnOwnThread("nbdinfo", [Harness.uri(server, "absent")])
            #expect(missing.status != 0)
        }
    }

    @Test func nbdcopyCopiesTheImageByteForByte() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let image = try TestImage.write(to: dir)
            try await Harness.withServer { server in
                let copy = try await TestSupport.runOnOwnThread("nbdcopy", [Harness.uri(server), dir + "/out.img"])
                #expect(copy.status == 0, "\(copy.output)")
                #expect(try TestSupport.contentsEqual(image, dir + "/out.img"))
                // Many connections and requests at once, with small requests.
                let parallel = try await TestSupport.runOnOwnThread("nbdcopy", ["--connections=4", "--requests=64", "--request-size=65536",
                                                                  Harness.uri(server), dir + "/out2.img"])
                #expect(parallel.status == 0, "\(parallel.output)")
                #expect(try TestSupport.contentsEqual(image, dir + "/out2.img"))
            }
        }
    }

    @Test func qemuImgFindsTheImagesIdentical() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let image = try TestImage.write(to: dir)
            try await Harness.withServer { server in
                let result = try await TestSupport.runOnOwnThread("qemu-img", ["compare", "-f", "raw", "-F", "raw", image, Harness.uri(server)])
                #expect(result.status == 0, "\(result.output)")
                #expect(result.output.contains("Images are identical."))
                // A different image is told apart, so the comparison really read the export.
                var changed = TestImage.bytes
                changed[TestImage.size - 1] ^= 1
                try Data(changed).write(to: URL(fileURLWithPath: dir + "/changed.img"))
                let differs = try await TestSupport.runOnOwnThread("qemu-img", ["compare", "-f", "raw", "-F", "raw", dir + "/changed.img",
                                                                 Harness.uri(server)])
                #expect(differs.status == 1, "\(differs.output)")
            }
        }
    }

    @Test func servesOverAUnixSocket() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let image = try TestImage.write(to: dir)
            let socket = dir + "/nbd.sock"
            try await Harness.withServer(.unix(path: socket)) { server in
                #expect(server.port == nil)
                let uri = "nbd+unix:///disk?socket=\(socket)"
                let info = try await TestSupport.runOnOwnThread("nbdinfo", [uri])
                #expect(info.output.contains("export-size: \(TestImage.size)"), "\(info.output)")
                let copy = try await TestSupport.runOnOwnThread("nbdcopy", [uri, dir + "/out.img"])
                #expect(copy.status == 0, "\(copy.output)")
                #expect(try TestSupport.contentsEqual(image, dir + "/out.img"))
                let compare = try await TestSupport.runOnOwnThread("qemu-img", ["compare", "-f", "raw", "-F", "raw", image, uri])
                #expect(compare.output.contains("Images are identical."), "\(compare.output)")
            }
            #expect(!FileManager.default.fileExists(atPath: socket), "the socket file is removed when the server stops")
        }
    }

    /// A read that throws is an I/O error for that read only: the same connection goes on.
    @Test func aFailingReadIsAnIOErrorAndTheConnectionGoesOn() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            try await Harness.withServer { server in
                let io = try await TestSupport.runOnOwnThread("qemu-io", ["-r", "-f", "raw", Harness.uri(server, "failing"),
                                                          "-c", "read 0 4k", "-c", "read 2M 4k", "-c", "read 4k 4k"])
                let lines = io.output.split(separator: "\n").map(String.init)
                #expect(lines.count { $0.hasPrefix("read 4096/4096 bytes at offset") } == 2, "\(io.output)")
                #expect(lines.contains { $0.contains("Input/output error") }, "\(io.output)")
                #expect(lines.firstIndex { $0.contains("Input/output error") }! < lines.lastIndex { $0.contains("at offset 4096") }!)

                let copy = try await TestSupport.runOnOwnThread("nbdcopy", [Harness.uri(server, "failing"), dir + "/failing.img"])
                #expect(copy.status != 0)
                #expect(copy.output.contains("Input/output error"), "\(copy.output)")
                // The server still serves everyone else.
                let good = try await TestSupport.runOnOwnThread("nbdcopy", [Harness.uri(server, "small"), dir + "/small.img"])
                #expect(good.status == 0, "\(good.output)")
                #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/small.img")) == Data(TestImage.bytes[0..<4096]))
            }
        }
    }
}
