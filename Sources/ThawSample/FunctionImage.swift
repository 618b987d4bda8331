import Foundation
public import ThawImage
import ThawTar

/// Small runnable images for tests of `thaw run`: a busybox base with a function handler on top,
/// and images derived from any OCI layout by one more layer (a new handler, a changed command),
/// the way a function is deployed on a shared base.
///
/// Everything is deterministic: times are fixed and entries sorted as given, so the same input
/// writes the same blobs, and an image derived twice gets the same digest.
public enum FunctionImage {
    /// Where the handler script lives in images from `writeBusybox`.
    public static let handlerPath = "/function/handler"

    /// The busybox applets linked into `/bin`: a shell and the tools function tests use.
    public static let applets = [
        "sh", "cat", "echo", "sleep", "head", "dd", "ls", "id", "hostname", "mount", "wc", "yes", "true", "false",
    ]

    /// Writes a two-layer image into the OCI layout at `directory` (created if needed) under `tag`.
    ///
    /// Layer 1 (gzip) is a minimal root: the static busybox from `busybox` at `/bin/busybox` with
    /// `applets` linked to it, `dev`, `etc`, `home`, `proc`, `root`, `tmp`, and `/etc/passwd` and
    /// `/etc/group` with root and an unprivileged `app` (1000:1000, home `/home/app`). Layer 2
    /// (uncompressed) holds `handler` as the executable `/function/handler`. The handler has a
    /// layer of its own, as a function deployed on a shared base does: images that differ only in
    /// their handler share the base layer, and so its region and its chunks.
    ///
    /// - Parameters:
    ///   - busybox: a statically linked busybox on the host (Debian's busybox-static installs
    ///     `/bin/busybox`); a dynamically linked one is refused, since the image has no loader.
    ///   - handler: the script text, usually starting with `#!/bin/sh`.
    ///   - execution: the config's `config` (Entrypoint, Cmd, Env, WorkingDir, User).
    /// - Returns: the reference to open the image with.
    /// - Throws: `ImageError` when `busybox` is missing or not a static ELF executable;
    ///   Foundation's error when a file cannot be written.
    @discardableResult
    public static func writeBusybox(to directory: String, tag: String, busybox: String = "/bin/busybox", handler: String,
                                    execution: ImageConfiguration.Execution) throws -> ImageReference {
        let binary = try readStaticExecutable(busybox)
        var base: [(TarEntry, [UInt8])] = [
            SampleImage.directory("."), SampleImage.directory("bin"), SampleImage.directory("dev"),
            SampleImage.directory("etc"), SampleImage.directory("home"), SampleImage.directory("proc", 0o555),
            SampleImage.directory("root", 0o700), SampleImage.directory("tmp", 0o1777),
            (TarEntry(kind: .directory, path: Array("home/app".utf8), permissions: 0o755, uid: 1000, gid: 1000,
                      modificationTime: SampleImage.time), []),
            SampleImage.file("bin/busybox", binary.bytes, 0o755),
        ]
        for applet in applets {
            base.append(SampleImage.link(.symbolicLink, "bin/" + applet, to: "busybox"))
        }
        base.append(SampleImage.file("etc/passwd", Array("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n".utf8)))
        base.append(SampleImage.file("etc/group", Array("root:x:0:\napp:x:1000:\n".utf8)))
        let handlerLayer = [
            SampleImage.directory("function"),
            SampleImage.file(String(handlerPath.dropFirst()), Array(handler.utf8), 0o755),
        ]

        var writer = try OCILayoutWriter(directory: directory)
        var descriptors: [Descriptor] = []
        var diffIDs: [Digest] = []
        for (entries, compression) in [(base, LayerCompression.gzip), (handlerLayer, .none)] {
            let (descriptor, diffID) = try addLayer(entries, compression: compression, to: &writer)
            descriptors.append(descriptor)
            diffIDs.append(diffID)
        }
        let configuration = ImageConfiguration(architecture: binary.architecture, config: execution,
                                               rootfs: .init(diffIDs: diffIDs))
        let config = try writer.addBlob(Array(try SampleImage.encoder.encode(configuration)), mediaType: MediaTypes.ociConfig)
        try tagManifest(ImageManifest(config: config, layers: descriptors), tag: tag, in: &writer)
        return .ociLayout(path: directory, tag: tag)
    }

    /// Derives an image from the image `parentTag` of the OCI layout `layout` by one more layer,
    /// and tags it `newTag` in the same layout.
    ///
    /// The new layer is an uncompressed tar of `files`, each preceded by its parent directories
    /// (mode 0755, owned by root) so that it unpacks onto any base. The new config is the
    /// parent's, every field kept, with the new layer's diff ID appended (and a history entry,
    /// when the parent has a history) and `config` replaced by `execution`. The new manifest lists
    /// the parent's layer descriptors unchanged, then the new layer. The parent's blobs are only
    /// read, never rewritten, so this works on a shared layout such as the test corpus.
    ///
    /// - Parameters:
    ///   - files: paths absolute or relative to the root (`/function/handler` or
    ///     `function/handler`), contents, and permission bits (`mode & 0o7777` is kept).
    /// - Throws: `ImageError` when the parent cannot be read or verified, `parentTag` does not
    ///   name exactly one image manifest (a multi-platform index is not followed), or a path is
    ///   empty, repeated or holds `.` or `..`; Foundation's error when a file cannot be written.
    @discardableResult
    public static func appendLayer(to layout: String, parentTag: String, newTag: String,
                                   files: [(path: String, contents: [UInt8], mode: UInt16)],
                                   execution: ImageConfiguration.Execution) throws -> ImageReference {
        let parent = try Image.open(.ociLayout(path: layout, tag: parentTag))
        let parentManifest = try manifest(tagged: parentTag, in: layout)
        guard parentManifest.config.digest == parent.configDigest, parentManifest.layers.count == parent.layers.count else {
            throw ImageError(.invalidImage, "\(layout): the manifest tagged '\(parentTag)' changed while it was read")
        }

        var writer = try OCILayoutWriter(directory: layout)
        let (descriptor, diffID) = try addLayer(try layerEntries(files), compression: .none, to: &writer)
        let configBytes = try derivedConfig(parent.configBytes, appending: diffID, execution: execution, what: "config of '\(parentTag)' in \(layout)")
        let config = try writer.addBlob(configBytes, mediaType: MediaTypes.ociConfig)
        try tagManifest(ImageManifest(config: config, layers: parentManifest.layers + [descriptor]), tag: newTag, in: &writer)
        return .ociLayout(path: layout, tag: newTag)
    }

    // MARK: - Layers and manifests

    /// Writes one layer's tar, compressed as asked, and returns its descriptor and diff ID.
    static func addLayer(_ entries: [(TarEntry, [UInt8])], compression: LayerCompression,
                         to writer: inout OCILayoutWriter) throws -> (Descriptor, Digest) {
        var tar = TarWriter()
        for (entry, data) in entries { tar.append(entry, data: data) }
        tar.finish()
        let mediaType: String
        switch compression {
        case .none: mediaType = MediaTypes.ociLayerTar
        case .gzip: mediaType = MediaTypes.ociLayerGzip
        case .zstd: mediaType = MediaTypes.ociLayerZstd
        }
        let descriptor = try writer.addBlob(try SampleImage.compress(tar.bytes, compression), mediaType: mediaType)
        return (descriptor, Digest.of(tar.bytes))
    }

    static func tagManifest(_ manifest: ImageManifest, tag: String, in writer: inout OCILayoutWriter) throws {
        var descriptor = try writer.addBlob(Array(try SampleImage.encoder.encode(manifest)), mediaType: MediaTypes.ociManifest)
        descriptor.annotations = ["org.opencontainers.image.ref.name": tag]
        try writer.tag(descriptor)
    }

    /// The tar entries of `files`: every missing parent directory first, then the file.
    static func layerEntries(_ files: [(path: String, contents: [UInt8], mode: UInt16)]) throws -> [(TarEntry, [UInt8])] {
        var entries: [(TarEntry, [UInt8])] = []
        var directories = Set<String>()
        var seen = Set<String>()
        for file in files {
            let components = file.path.split(separator: "/", omittingEmptySubsequences: true)
            guard !components.isEmpty, !components.contains(where: { $0 == "." || $0 == ".." }) else {
                throw ImageError(.invalidImage, "'\(file.path)' is not a file path for a layer (empty, or holding . or ..)")
            }
            let path = components.joined(separator: "/")
            guard seen.insert(path).inserted, !directories.contains(path) else {
                throw ImageError(.invalidImage, "'\(file.path)' is given twice, or is also a parent directory")
            }
            for depth in 1..<components.count {
                let directory = components[0..<depth].joined(separator: "/")
                guard !seen.contains(directory) else {
                    throw ImageError(.invalidImage, "'\(directory)' is given as a file and as the directory of '\(file.path)'")
                }
                if directories.insert(directory).inserted { entries.append(SampleImage.directory(directory)) }
            }
            entries.append(SampleImage.file(path, file.contents, file.mode & 0o7777))
        }
        return entries
    }

    // MARK: - Reading the parent

    /// The image manifest a tag of an OCI layout names, read and checked against its descriptor.
    static func manifest(tagged tag: String, in layout: String) throws -> ImageManifest {
        let index = try decode(ImageIndex.self, from: try read(layout + "/index.json", what: "index"), what: "\(layout)/index.json")
        let tagged = index.manifests.filter { $0.referenceName == tag }
        guard tagged.count == 1, let descriptor = tagged.first else {
            throw ImageError(tagged.isEmpty ? .notFound : .ambiguous, "\(layout) tags \(tagged.count) images '\(tag)', not one")
        }
        guard descriptor.mediaType == MediaTypes.ociManifest || descriptor.mediaType == MediaTypes.dockerManifest else {
            throw ImageError(.unsupportedMediaType,
                             "'\(tag)' in \(layout) is a \(descriptor.mediaType), not an image manifest; derive from a single-platform tag")
        }
        let bytes = try read(layout + "/blobs/sha256/" + descriptor.digest.hex, what: "manifest \(descriptor.digest)")
        guard bytes.count == descriptor.size, Digest.of(bytes) == descriptor.digest else {
            throw ImageError(.digestMismatch, "manifest blob \(descriptor.digest) in \(layout) does not match its descriptor")
        }
        return try decode(ImageManifest.self, from: bytes, what: "manifest \(descriptor.digest)")
    }

    /// The parent's config with the new layer appended and `config` replaced, every other field
    /// kept as it was (history, labels, creation time: what other tools read).
    static func derivedConfig(_ parent: [UInt8], appending diffID: Digest, execution: ImageConfiguration.Execution,
                              what: String) throws -> [UInt8] {
        guard var object = try? JSONSerialization.jsonObject(with: Data(parent)) as? [String: Any],
              var rootfs = object["rootfs"] as? [String: Any],
              let diffIDs = rootfs["diff_ids"] as? [Any] else {
            throw ImageError(.invalidJSON, "\(what) is not a JSON object with rootfs.diff_ids")
        }
        rootfs["diff_ids"] = diffIDs + [diffID.description]
        object["rootfs"] = rootfs
        object["config"] = try JSONSerialization.jsonObject(with: try SampleImage.encoder.encode(execution))
        if let history = object["history"] as? [Any] {
            object["history"] = history + [["created_by": "FunctionImage.appendLayer"]]
        }
        let bytes = Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
        // What Thaw reads of it must still decode.
        _ = try decode(ImageConfiguration.self, from: bytes, what: "derived \(what)")
        return bytes
    }

    static func read(_ path: String, what: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ImageError(.notFound, "\(what) \(path) cannot be read")
        }
        return [UInt8](data)
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], what: String) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw ImageError(.invalidJSON, "\(what) is not valid: \(error)")
        }
    }

    // MARK: - The busybox binary

    /// A host executable's bytes and the OCI architecture it is built for.
    struct Executable {
        var bytes: [UInt8]
        var architecture: String
    }

    /// Reads a 64-bit little-endian ELF executable and refuses one that asks for a program
    /// interpreter: the image holds no dynamic loader, so it would fail to start with ENOENT.
    static func readStaticExecutable(_ path: String) throws -> Executable {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ImageError(.notFound, "\(path) cannot be read; install a static busybox (Debian: apt-get install busybox-static)")
        }
        let bytes = [UInt8](data)
        func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        func u64(_ at: Int) -> Int { (0..<8).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
        guard bytes.count >= 64, bytes[0..<4].elementsEqual([0x7f, 0x45, 0x4c, 0x46]), bytes[4] == 2, bytes[5] == 1 else {
            throw ImageError(.invalidImage, "\(path) is not a 64-bit little-endian ELF executable")
        }
        let architecture: String
        switch u16(18) {
        case 62: architecture = "amd64"
        case 183: architecture = "arm64"
        case 243: architecture = "riscv64"
        case let machine: throw ImageError(.invalidImage, "\(path) is an ELF executable for machine \(machine), not amd64, arm64 or riscv64")
        }
        let headers = u64(32), size = u16(54), count = u16(56)
        guard size >= 4, headers >= 64, headers <= bytes.count, size * count <= bytes.count - headers else {
            throw ImageError(.invalidImage, "\(path) has program headers outside the file")
        }
        for i in 0..<count where u16(headers + i * size) == 3 && u16(headers + i * size + 2) == 0 {  // PT_INTERP
            throw ImageError(.invalidImage, "\(path) is dynamically linked; the image has no loader for it (Debian: busybox-static installs a static /bin/busybox)")
        }
        return Executable(bytes: bytes, architecture: architecture)
    }
}
