import Foundation
import Testing
import ThawImage
import ThawSample
import ThawTar
import ThawTestSupport


/// Reads every layer to its end (verifying digests) and returns the tar entry paths per layer.
func readLayers(_ image: Image) throws -> [[String]] {
    try image.layers.map { layer in
        let stream = try image.openLayer(layer)
        let reader = TarReader(source: stream)
        var paths: [String] = []
        while let entry = try reader.nextEntry() { paths.append(entry.displayPath) }
        try stream.finish()
        return paths
    }
}

@Suite struct ImageReferenceTests {
    @Test(arguments: [
        ("oci:/images/layout", ImageReference.ociLayout(path: "/images/layout", tag: nil)),
        ("oci:/images/layout:v1", .ociLayout(path: "/images/layout", tag: "v1")),
        ("docker-archive:/tmp/app.tar", .dockerArchive(path: "/tmp/app.tar", name: nil)),
        ("docker-archive:/tmp/app.tar:thaw/app:latest", .dockerArchive(path: "/tmp/app.tar", name: "thaw/app:latest")),
        ("/some/file.tar", .dockerArchive(path: "/some/file.tar", name: nil)),
    ])
    func parses(text: String, expected: ImageReference) throws {
        #expect(try ImageReference(parsing: text, isDirectory: { _ in false }) == expected)
    }

    @Test func aBareDirectoryIsAnOCILayout() throws {
        #expect(try ImageReference(parsing: "/layout", isDirectory: { $0 == "/layout" }) == .ociLayout(path: "/layout", tag: nil))
    }

    @Test(arguments: ["docker://alpine", "oci:", "oci::tag", "docker-archive:", "/not/a/layout"])
    func refuses(text: String) {
        #expect(throws: ImageError.self) { try ImageReference(parsing: text, isDirectory: { _ in false }) }
    }

    @Test func parsesPlatforms() throws {
        #expect(try Platform(parsing: "linux/arm64/v8") == Platform(os: "linux", architecture: "arm64", variant: "v8"))
        #expect(Platform.linuxAMD64.accepts(Platform(os: "linux", architecture: "amd64", variant: "v3")))
        #expect(!Platform.linuxAMD64.accepts(Platform(os: "linux", architecture: "arm64")))
        #expect(throws: ImageError.self) { try Platform(parsing: "linux") }
    }
}

@Suite struct ImageReadingTests {
    @Test func readsAndVerifiesEveryLayerOfTheSample() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let reference = try SampleImage.write(to: dir + "/oci", tag: "t")
            let image = try Image.open(reference)
            #expect(image.layers.map(\.compression) == [.gzip, .zstd, .none])
            let paths = try readLayers(image)
            #expect(paths[0].contains("usr/bin/ping"))
            #expect(paths[2].contains("usr/lib/.wh..wh..opq"))
            #expect(image.configuration.config?.cmd == ["/bin/handler"])
        }
    }

    /// The config blob is kept byte for byte (a push stores it next to the manifest), the same
    /// from an OCI layout and from a docker archive of the same image.
    @Test func keepsTheConfigBytesAsStored() throws {
        try TestSupport.withTemporaryDirectory { dir in
            try Fixtures.make("full", in: dir + "/oci", tag: "full", dockerArchive: dir + "/full.tar")
            let oci = try Image.open(.ociLayout(path: dir + "/oci", tag: "full"))
            let blob = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/oci/blobs/sha256/" + oci.configDigest.hex)))
            #expect(oci.configBytes == blob)
            #expect(Digest.of(oci.configBytes) == oci.configDigest)
            let archive = try Image.open(.dockerArchive(path: dir + "/full.tar", name: nil))
            #expect(archive.configBytes == blob)
            #expect(archive.configDigest == oci.configDigest)
        }
    }

    @Test func namesTheTagsWhenTheTagIsMissingOrAmbiguous() throws {
        try TestSupport.withTemporaryDirectory { dir in
            try SampleImage.write(to: dir, tag: "a", variant: 1)
            try SampleImage.write(to: dir, tag: "b", variant: 2)
            do {
                _ = try Image.open(.ociLayout(path: dir, tag: nil))
                Issue.record("ambiguous layout accepted")
            } catch let error as ImageError {
                #expect(error.code == .ambiguous)
                #expect(error.message.contains("a, b") || error.message.contains("b, a"))
            }
            do {
                _ = try Image.open(.ociLayout(path: dir, tag: "c"))
                Issue.record("missing tag accepted")
            } catch let error as ImageError {
                #expect(error.code == .notFound)
            }
        }
    }

    /// Rewrites the blob of layer `index` with `change` applied (the descriptor keeps the old digest).
    func tamper(_ dir: String, layer index: Int, _ change: (inout [UInt8]) -> Void) throws -> Image {
        let image = try Image.open(.ociLayout(path: dir, tag: nil))
        let path = image.layers[index].path
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        change(&bytes)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return image
    }

    @Test(arguments: [0, 1, 2])
    func refusesATamperedBlobNamingTheLayer(layer: Int) throws {
        try TestSupport.withTemporaryDirectory { dir in
            try SampleImage.write(to: dir)
            let image = try tamper(dir, layer: layer) { $0[$0.count / 2] ^= 0x55 }
            do {
                _ = try readLayers(image)
                Issue.record("tampered layer \(layer) accepted")
            } catch let error as ImageError {
                #expect(error.layer == image.layers[layer].label)
            } catch let error as TarError {
                // A flipped byte in an uncompressed tar may break a header before the digest is checked.
                #expect(layer == 2, "unexpected tar error \(error)")
            }
        }
    }

    @Test(arguments: [0, 1])
    func refusesATruncatedCompressedLayer(layer: Int) throws {
        try TestSupport.withTemporaryDirectory { dir in
            try SampleImage.write(to: dir)
            let image = try tamper(dir, layer: layer) { $0.removeLast(20) }
            #expect(throws: (any Error).self) { try readLayers(image) }
            do { _ = try readLayers(image) } catch let error as ImageError {
                #expect(error.code == .corruptCompression || error.code == .sizeMismatch)
                #expect(error.layer == image.layers[layer].label)
            } catch {}
        }
    }

    @Test func refusesAWrongDiffID() throws {
        try TestSupport.withTemporaryDirectory { dir in
            try SampleImage.write(to: dir)
            let image = try Image.open(.ociLayout(path: dir, tag: nil))
            var wrong = image
            wrong.layers[1].diffID = image.layers[0].diffID
            do {
                _ = try readLayers(wrong)
                Issue.record("wrong diff ID accepted")
            } catch let error as ImageError {
                #expect(error.code == .digestMismatch)
                #expect(error.layer == wrong.layers[1].label)
            }
        }
    }

    @Test func refusesAMissingLayout() {
        #expect(throws: ImageError.self) { try Image.open(.ociLayout(path: "/nonexistent/layout", tag: nil)) }
        #expect(throws: ImageError.self) { try Image.open(.dockerArchive(path: "/nonexistent.tar", name: nil)) }
    }
}
