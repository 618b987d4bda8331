import Foundation
import Testing
import ThawFlatten
import ThawImage
import ThawSample
import ThawTar
import ThawTestSupport

/// The runnable images `thaw run` is tested with: a busybox base with a handler layer, and images
/// derived from a layout by one more layer. Each is read back with ThawImage, flattened, and
/// looked at with debugfs and the kernel; the busybox one is run in a chroot.
/// Needs a static busybox at /bin/busybox (Debian: busybox-static).
@Suite(.serialized) struct FunctionImageTests {
    static let handler = "#!/bin/sh\necho \"hello from $(id -u)\"\ncat\n"
    static let execution = ImageConfiguration.Execution(
        user: "app", env: ["PATH=/bin"], entrypoint: ["/bin/sh"], cmd: ["/function/handler"], workingDir: "/home/app")

    /// Entry paths of each layer, read to the end so every digest is checked.
    func layerPaths(_ image: Image) throws -> [[String]] {
        try image.layers.map { layer in
            let stream = try image.openLayer(layer)
            let reader = TarReader(source: stream)
            var paths: [String] = []
            while let entry = try reader.nextEntry() { paths.append(entry.displayPath) }
            try stream.finish()
            return paths
        }
    }

    /// What debugfs prints for `request`, without the version banner it writes to standard error.
    /// Flattens on a thread of its own: a corpus image takes seconds in a debug build, and the
    /// test suite's other tests need the two threads of Swift's concurrency pool meanwhile.
    static func flatten(_ image: Image, to output: String) async throws -> FlattenSummary {
        try await TestSupport.onOwnThread { try Flattener().flatten(image, to: output) }
    }

    func debugfs(_ request: String, _ image: String) throws -> String {
        let output = try TestSupport.run("debugfs", ["-R", request, image]).output
        guard output.hasPrefix("debugfs "), let newline = output.firstIndex(of: "\n") else { return output }
        return String(output[output.index(after: newline)...])
    }

    @Test func aBusyboxImageHasABaseAndAHandlerLayerAndRuns() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let reference = try FunctionImage.writeBusybox(to: dir + "/oci", tag: "fn", handler: Self.handler,
                                                           execution: Self.execution)
            #expect(reference == .ociLayout(path: dir + "/oci", tag: "fn"))
            let image = try Image.open(reference)
            #expect(image.layers.map(\.compression) == [.gzip, .none])
            #expect(image.configuration.config == Self.execution)
            #expect(image.configuration.rootfs.diffIDs.count == 2)
            let paths = try layerPaths(image)
            #expect(paths[1] == ["function", "function/handler"])
            for path in ["bin/busybox", "bin/sh", "bin/mount", "etc/passwd", "etc/group", "tmp", "proc", "home/app"] {
                #expect(paths[0].contains(path), "\(path) is in the base layer")
            }

            let output = dir + "/fn.ext4"
            let summary = try await Self.flatten(image, to: output)
            #expect(summary.regions.count == 2)
            #expect(try TestSupport.fsckProblems(output) == nil)
            let stat = try debugfs("stat /function/handler", output)
            #expect(stat.contains("Type: regular"), "\(stat)")
            #expect(stat.contains("Mode:  0755"), "\(stat)")
            #expect(try debugfs("cat /function/handler", output).contains(Self.handler))
            #expect(try debugfs("cat /etc/passwd", output).contains("app:x:1000:1000::/home/app:/bin/sh\n"))
            #expect(try debugfs("stat /bin/sh", output).contains("Fast link dest: \"busybox\""))
            #expect(try debugfs("stat /tmp", output).contains("Mode:  01777"))

            // The kernel reads it, and the handler runs on the image's own busybox.
            try TestSupport.withLoopMount(output, at: dir + "/mnt") {
                let busybox = try Data(contentsOf: URL(fileURLWithPath: "/bin/busybox"))
                #expect(FileManager.default.contents(atPath: dir + "/mnt/bin/busybox") == busybox)
                let run = try TestSupport.run("chroot", ["--userspec=1000:1000", dir + "/mnt", "/bin/sh", "/function/handler"],
                                              input: Data("event\n".utf8))
                #expect(run.output == "hello from 1000\nevent\n")
            }
        }
    }

    @Test func aDynamicOrMissingBusyboxIsRefused() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let missing = #expect(throws: ImageError.self) {
                try FunctionImage.writeBusybox(to: dir + "/oci", tag: "fn", busybox: dir + "/none", handler: "", execution: .init())
            }
            #expect(missing?.message.contains("busybox-static") == true)
            let dynamic = #expect(throws: ImageError.self) {
                try FunctionImage.writeBusybox(to: dir + "/oci", tag: "fn", busybox: "/bin/ls", handler: "", execution: .init())
            }
            #expect(dynamic?.message.contains("dynamically linked") == true)
            let script = #expect(throws: ImageError.self) {
                try FunctionImage.writeBusybox(to: dir + "/oci", tag: "fn", busybox: "/etc/passwd", handler: "", execution: .init())
            }
            #expect(script?.message.contains("not a 64-bit little-endian ELF") == true)
        }
    }

    /// A derived image: the parent's layers and config untouched, one more layer, the new command.
    @Test func appendingALayerDerivesAnImageAndLeavesTheParentAlone() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let layout = dir + "/oci"
            let parentReference = try SampleImage.write(to: layout, tag: "s")
            let parent = try Image.open(parentReference)
            let blobs = try blobSnapshot(layout)

            let script = Array("#!/bin/sh\necho derived\n".utf8)
            let execution = ImageConfiguration.Execution(cmd: ["/function/handler"], workingDir: "/function")
            let reference = try FunctionImage.appendLayer(
                to: layout, parentTag: "s", newTag: "s-fn",
                files: [("/function/handler", script, 0o755), ("function/lib/util.sh", Array("util\n".utf8), 0o100644)],
                execution: execution)
            #expect(reference == .ociLayout(path: layout, tag: "s-fn"))

            // The parent is still there, unchanged; every blob it had is byte-identical.
            let parentAgain = try Image.open(parentReference)
            #expect(parentAgain.configDigest == parent.configDigest)
            let after = try blobSnapshot(layout)
            for (name, bytes) in blobs { #expect(after[name] == bytes, "blob \(name) is unchanged") }
            #expect(after.count == blobs.count + 3, "one layer, one config and one manifest are new")

            let derived = try Image.open(reference)
            #expect(derived.layers.count == parent.layers.count + 1)
            #expect(Array(derived.layers.map(\.blobDigest).prefix(parent.layers.count)) == parent.layers.map(\.blobDigest))
            #expect(derived.layers.last?.compression == LayerCompression.none)
            #expect(derived.configuration.config == execution)
            #expect(Array(derived.configuration.rootfs.diffIDs.dropLast()) == parent.configuration.rootfs.diffIDs)
            #expect(derived.configuration.architecture == parent.configuration.architecture)
            #expect(try layerPaths(derived).last == ["function", "function/handler", "function/lib", "function/lib/util.sh"])

            let output = dir + "/derived.ext4"
            _ = try await Self.flatten(derived, to: output)
            #expect(try TestSupport.fsckProblems(output) == nil)
            #expect(try debugfs("cat /function/handler", output) == "#!/bin/sh\necho derived\n")
            #expect(try debugfs("stat /function/lib/util.sh", output).contains("Mode:  0644"))
            #expect(try debugfs("cat /app/variant", output) == "variant 1\n", "the parent's files are there")

            // Deriving again gives the same image: nothing is random.
            let again = try FunctionImage.appendLayer(
                to: layout, parentTag: "s", newTag: "s-fn2",
                files: [("/function/handler", script, 0o755), ("function/lib/util.sh", Array("util\n".utf8), 0o100644)],
                execution: execution)
            #expect(try Image.open(again).configDigest == derived.configDigest)
        }
    }

    /// A new handler over a busybox function image replaces the old one and runs.
    @Test func aDerivedBusyboxImageRunsItsNewHandler() async throws {
        try await TestSupport.withTemporaryDirectory { dir in
            let layout = dir + "/oci"
            try FunctionImage.writeBusybox(to: layout, tag: "v1", handler: Self.handler, execution: Self.execution)
            let reference = try FunctionImage.appendLayer(
                to: layout, parentTag: "v1", newTag: "v2",
                files: [(FunctionImage.handlerPath, Array("#!/bin/sh\necho v2\n".utf8), 0o755)],
                execution: Self.execution)
            let image = try Image.open(reference)
            #expect(image.layers.count == 3)
            let output = dir + "/v2.ext4"
            _ = try await Self.flatten(image, to: output)
            #expect(try TestSupport.fsckProblems(output) == nil)
            try TestSupport.withLoopMount(output, at: dir + "/mnt") {
                let run = try TestSupport.run("chroot", [dir + "/mnt", "/function/handler"])
                #expect(run.output == "v2\n")
            }
        }
    }

    @Test func refusesBadPathsAndAMissingParent() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let layout = dir + "/oci"
            try SampleImage.write(to: layout, tag: "s")
            let cases: [[(path: String, contents: [UInt8], mode: UInt16)]] = [
                [("../escape", [], 0o644)],
                [("/", [], 0o644)],
                [("a/./b", [], 0o644)],
                [("f", [], 0o644), ("/f", [], 0o644)],
                [("d/f", [], 0o644), ("d", [], 0o644)],
                [("d", [], 0o644), ("d/f", [], 0o644)],
            ]
            for files in cases {
                #expect(throws: ImageError.self, "\(files.map(\.path))") {
                    try FunctionImage.appendLayer(to: layout, parentTag: "s", newTag: "bad", files: files, execution: .init())
                }
            }
            let missing = #expect(throws: ImageError.self) {
                try FunctionImage.appendLayer(to: layout, parentTag: "nope", newTag: "bad", files: [], execution: .init())
            }
            #expect(missing?.code == .notFound)
            // Nothing was tagged.
            #expect(throws: ImageError.self) { try Image.open(.ociLayout(path: layout, tag: "bad")) }
        }
    }

    /// The real corpus, through a layout whose blobs are links to the corpus's: the derived
    /// image flattens, and neither the corpus's blobs nor its index change.
    @Test func derivesFromTheCorpusWithoutChangingIt() async throws {
        let corpus = TestSupport.corpus + "/oci"
        try await TestSupport.withTemporaryDirectory { dir in
            let layout = dir + "/oci"
            let fm = FileManager.default
            try fm.createDirectory(atPath: layout + "/blobs/sha256", withIntermediateDirectories: true)
            let names = try fm.contentsOfDirectory(atPath: corpus + "/blobs/sha256")
            for name in names {
                try fm.createSymbolicLink(atPath: layout + "/blobs/sha256/" + name, withDestinationPath: corpus + "/blobs/sha256/" + name)
            }
            for file in ["index.json", "oci-layout"] { try fm.copyItem(atPath: corpus + "/" + file, toPath: layout + "/" + file) }
            let index = fm.contents(atPath: corpus + "/index.json")
            let modified = try names.map { try fm.attributesOfItem(atPath: corpus + "/blobs/sha256/" + $0)[.modificationDate] as? Date }

            let parent = try Image.open(.ociLayout(path: layout, tag: "py"))
            let reference = try FunctionImage.appendLayer(
                to: layout, parentTag: "py", newTag: "py-fn",
                files: [("/function/handler", Array("#!/usr/bin/python3\nprint('hi')\n".utf8), 0o755)],
                execution: .init(cmd: ["/function/handler"]))
            let derived = try Image.open(reference)
            #expect(derived.layers.count == parent.layers.count + 1)
            #expect(derived.configuration.config?.cmd == ["/function/handler"])
            // The rest of the config is kept: creation time, history (one more entry).
            let config = String(decoding: derived.configBytes, as: UTF8.self)
            #expect(config.contains("\"empty_layer\":true"))
            #expect(config.contains("FunctionImage.appendLayer"))
            let output = dir + "/py-fn.ext4"
            _ = try await Self.flatten(derived, to: output)
            #expect(try debugfs("cat /function/handler", output).contains("print('hi')"))
            #expect(try debugfs("stat /usr/bin/python3", output).contains("Type: symlink"))

            #expect(fm.contents(atPath: corpus + "/index.json") == index)
            let modifiedAfter = try names.map { try fm.attributesOfItem(atPath: corpus + "/blobs/sha256/" + $0)[.modificationDate] as? Date }
            #expect(modifiedAfter == modified)
            for name in names {
                #expect((try? fm.destinationOfSymbolicLink(atPath: layout + "/blobs/sha256/" + name)) != nil, "\(name) is still a link")
            }
        }
    }

    /// Every blob of a layout with its bytes.
    func blobSnapshot(_ layout: String) throws -> [String: Data] {
        var blobs: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: layout + "/blobs/sha256") {
            blobs[name] = try Data(contentsOf: URL(fileURLWithPath: layout + "/blobs/sha256/" + name))
        }
        return blobs
    }
}
