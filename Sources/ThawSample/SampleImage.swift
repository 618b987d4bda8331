import CompressNIO
import CZstd
import Foundation
import NIOCore
public import ThawImage
import ThawTar

/// Generates small but complete OCI images with no network and no tools: the image `thaw demo`
/// flattens, and test input that exercises every kind of entry.
///
/// Three layers, compressed with gzip, zstd and nothing: a base with directories, files,
/// symbolic and hard links, a device node, a FIFO and a file capability; an application layer
/// with long paths; a top layer with a whiteout, an opaque directory and `variant`-specific data.
/// Same `variant`, same bytes: content comes from a seeded generator, times are fixed.
public enum SampleImage {
    /// Writes the image into the OCI layout at `directory` (created if needed) under `tag`.
    ///
    /// - Returns: the reference to pass to `thaw flatten`.
    @discardableResult
    public static func write(to directory: String, tag: String = "latest", variant: UInt64 = 1) throws -> ImageReference {
        let layers: [(entries: [(TarEntry, [UInt8])], compression: LayerCompression)] = [
            (baseLayer(), .gzip), (applicationLayer(), .zstd), (topLayer(variant: variant), .none),
        ]
        var writer = try OCILayoutWriter(directory: directory)
        var descriptors: [Descriptor] = []
        var diffIDs: [Digest] = []
        for (entries, compression) in layers {
            var tar = TarWriter()
            for (entry, data) in entries { tar.append(entry, data: data) }
            tar.finish()
            diffIDs.append(Digest.of(tar.bytes))
            let blob = try compress(tar.bytes, compression)
            let mediaType: String
            switch compression {
            case .none: mediaType = MediaTypes.ociLayerTar
            case .gzip: mediaType = MediaTypes.ociLayerGzip
            case .zstd: mediaType = MediaTypes.ociLayerZstd
            }
            descriptors.append(try writer.addBlob(blob, mediaType: mediaType))
        }
        let configuration = ImageConfiguration(
            config: .init(env: ["PATH=/usr/local/bin:/usr/bin:/bin"], cmd: ["/bin/handler"], workingDir: "/app"),
            rootfs: .init(diffIDs: diffIDs))
        let config = try writer.addBlob(Array(try encoder.encode(configuration)), mediaType: MediaTypes.ociConfig)
        let manifest = ImageManifest(config: config, layers: descriptors)
        var manifestDescriptor = try writer.addBlob(Array(try encoder.encode(manifest)), mediaType: MediaTypes.ociManifest)
        manifestDescriptor.annotations = ["org.opencontainers.image.ref.name": tag]
        try writer.tag(manifestDescriptor)
        return .ociLayout(path: directory, tag: tag)
    }

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }

    static let time = Timestamp(seconds: 1_700_000_000)

    static func directory(_ path: String, _ permissions: UInt16 = 0o755) -> (TarEntry, [UInt8]) {
        (TarEntry(kind: .directory, path: Array(path.utf8), permissions: permissions, modificationTime: time), [])
    }

    static func file(_ path: String, _ data: [UInt8], _ permissions: UInt16 = 0o644, xattrs: [String: [UInt8]] = [:]) -> (TarEntry, [UInt8]) {
        (TarEntry(kind: .regular, path: Array(path.utf8), permissions: permissions, size: UInt64(data.count),
                  modificationTime: time, extendedAttributes: xattrs), data)
    }

    static func link(_ kind: TarEntry.Kind, _ path: String, to target: String) -> (TarEntry, [UInt8]) {
        (TarEntry(kind: kind, path: Array(path.utf8), linkName: Array(target.utf8), permissions: 0o777, modificationTime: time), [])
    }

    /// Deterministic bytes that do not compress or repeat (xorshift64*).
    static func noise(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var out = [UInt8]()
        out.reserveCapacity(count)
        while out.count < count {
            state ^= state >> 12
            state ^= state << 25
            state ^= state >> 27
            let word = state &* 0x2545_F491_4F6C_DD1D
            for shift in stride(from: 0, to: 64, by: 8) where out.count < count {
                out.append(UInt8(truncatingIfNeeded: word >> UInt64(shift)))
            }
        }
        return out
    }

    static func baseLayer() -> [(TarEntry, [UInt8])] {
        let capability: [UInt8] = [0, 0, 0, 2, 0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]  // cap_net_bind_service
        return [
            directory("."), directory("bin"), directory("dev"), directory("etc"), directory("run"),
            directory("tmp", 0o1777), directory("usr"), directory("usr/lib"), directory("usr/bin"),
            file("etc/os-release", Array("NAME=Thaw sample\nID=thaw\n".utf8)),
            file("etc/passwd", Array("root:x:0:0:root:/root:/bin/sh\napp:x:100000:70000::/app:/bin/sh\n".utf8)),
            file("bin/handler", Array("#!/bin/sh\n# Answers an event with itself.\ncat\n".utf8), 0o755),
            link(.hardLink, "usr/bin/handler", to: "bin/handler"),
            link(.symbolicLink, "lib", to: "usr/lib"),
            file("usr/lib/libsample.so.1", noise(1_500_000, seed: 1), 0o644),
            link(.symbolicLink, "usr/lib/libsample.so", to: "libsample.so.1"),
            file("usr/bin/ping", noise(40_000, seed: 2), 0o4755, xattrs: ["security.capability": capability]),
            (TarEntry(kind: .characterDevice, path: Array("dev/null".utf8), permissions: 0o666,
                      modificationTime: time, deviceMajor: 1, deviceMinor: 3), []),
            (TarEntry(kind: .fifo, path: Array("run/events".utf8), permissions: 0o600, modificationTime: time), []),
            file("etc/empty", []),
        ]
    }

    static func applicationLayer() -> [(TarEntry, [UInt8])] {
        let deep = "app/" + String(repeating: "nested-directory/", count: 8) + "a-file-name-long-enough-for-pax.txt"
        var entries = [
            directory("app"), directory("app/data"),
            file("app/main.py", Array("import sys\nprint(sys.stdin.read())\n".utf8)),
            file("app/data/model.bin", noise(3_000_000, seed: 3)),
            link(.symbolicLink, "app/current", to: "/app/data/" + String(repeating: "x", count: 80)),
        ]
        var components = "app"
        for _ in 0..<8 {
            components += "/nested-directory"
            entries.append(directory(components))
        }
        entries.append(file(deep, Array("deep\n".utf8)))
        return entries
    }

    static func topLayer(variant: UInt64) -> [(TarEntry, [UInt8])] {
        [
            file("etc/.wh.empty", []),
            directory("usr/lib"),
            file("usr/lib/.wh..wh..opq", []),
            file("usr/lib/libsample.so.2", noise(700_000, seed: 10 + variant)),
            file("app/variant", Array("variant \(variant)\n".utf8)),
        ]
    }

    static func compress(_ bytes: [UInt8], _ compression: LayerCompression) throws -> [UInt8] {
        switch compression {
        case .none:
            return bytes
        case .gzip:
            var buffer = ByteBuffer(bytes: bytes)
            var compressed = try buffer.compress(with: .gzip())
            return compressed.readBytes(length: compressed.readableBytes) ?? []
        case .zstd:
            var out = [UInt8](repeating: 0, count: ZSTD_compressBound(bytes.count))
            let size = bytes.withUnsafeBytes { src in
                out.withUnsafeMutableBytes { dst in
                    ZSTD_compress(dst.baseAddress, dst.count, src.baseAddress, src.count, 3)
                }
            }
            guard ZSTD_isError(size) == 0 else { throw ImageError(.io, "zstd compression failed") }
            return Array(out.prefix(size))
        }
    }
}
