import ArgumentParser
import Foundation
import ThawFlatten
import ThawImage

/// `thaw flatten IMAGE -o OUT`: one OCI image to one deterministic ext4 image.
struct Flatten: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Flatten an OCI image into a deterministic ext4 image.",
        discussion: """
            IMAGE is oci:PATH[:TAG] (an OCI image layout), docker-archive:PATH[:NAME:TAG] \
            (a `docker save` archive), a bare directory (OCI layout) or a bare .tar (docker archive).
            """
    )

    @Argument(help: "The image to flatten.")
    var image: String

    @Option(name: .shortAndLong, help: "Where to write the ext4 image.")
    var output: String

    @Option(help: "Platform to pick from a multi-platform image (os/arch[/variant]).")
    var platform: String = "linux/amd64"

    @Option(help: "Chunk size in bytes; each layer's data starts on a chunk boundary.")
    var chunkSize: UInt64 = Flattener.defaultChunkSize

    func run() throws {
        do {
            let (summary, elapsed) = try FlattenCommand.run(image: image, output: output, platform: platform, chunkSize: chunkSize)
            print(FlattenCommand.describe(summary, output: output, elapsed: elapsed))
        } catch let error as FlattenError {
            throw ValidationFailure(error.description)
        } catch let error as ImageError {
            throw ValidationFailure(error.description)
        }
    }
}

/// A failure reported as one clear line and exit status 1.
struct ValidationFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum FlattenCommand {
    static func run(image: String, output: String, platform: String, chunkSize: UInt64) throws -> (FlattenSummary, Duration) {
        let reference = try ImageReference(parsing: image) { path in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
        }
        let opened = try Image.open(reference, platform: try Platform(parsing: platform))
        let display = ProgressLine()
        let started = ContinuousClock.now
        var flattener = Flattener(chunkSize: chunkSize)
        if display.enabled {
            flattener.progress = { progress in
                display.show("layer \(progress.layer + 1)/\(progress.layerCount): \(progress.bytesRead >> 20) MiB")
            }
        }
        let summary = try flattener.flatten(opened, to: output)
        display.clear()
        return (summary, ContinuousClock.now - started)
    }

    static func describe(_ summary: FlattenSummary, output: String, elapsed: Duration) -> String {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        var lines = [
            "image \(summary.configDigest) → \(output) in \(String(format: "%.2f", seconds)) s",
            "  layers: \(summary.layerCount), \(mib(summary.uncompressedBytes)) uncompressed, \(summary.entries) tar entries",
            "  files: \(summary.regularFiles) regular files, \(mib(summary.fileBytes)) of data",
            "  ext4: \(mib(summary.imageSize)) (\(summary.filesystem.blockCount) blocks, \(summary.filesystem.groupCount) groups, \(summary.filesystem.usedInodes) inodes)",
        ]
        for region in summary.regions {
            lines.append("  layer \(region.layer + 1) region: offset \(mib(region.offset)), \(mib(region.length)) (\(region.diffID))")
        }
        let metadataOffset = summary.filesystem.metadataStart * 4096
        lines.append("  metadata: offset \(mib(metadataOffset)), \(mib(summary.filesystem.metadataBlocks * 4096))")
        lines.append("  chunks: \(summary.imageSize / summary.chunkSize) of \(summary.chunkSize / 1024) KiB")
        return lines.joined(separator: "\n")
    }

    static func mib(_ bytes: UInt64) -> String {
        String(format: "%.1f MiB", Double(bytes) / 1_048_576)
    }
}
