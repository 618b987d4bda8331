import ThawBinary
import ArgumentParser
import Foundation
import ThawFlatten
import ThawImage
import ThawMetadata
import ThawPush
import ThawSeal
import ThawStore

/// `thaw push IMAGE`: flatten, seal and upload in one pass; the manifest last.
struct Push: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Flatten an image, seal its chunks and upload the ones the store lacks.",
        discussion: """
            IMAGE is oci:PATH[:TAG], docker-archive:PATH[:NAME:TAG], a bare directory (OCI layout) \
            or a bare .tar (docker archive). Layers pushed before under the same chunk size and salt \
            are not read again. The manifest is written last: an interrupted push leaves no manifest, \
            and running it again uploads only what is missing. The push goes to the active root and is \
            recorded in the metadata; with --name, NAME then points at the new manifest (the one it \
            pointed at before stays until garbage collection decides).
            """
    )

    @Argument(help: "The image to push.")
    var image: String

    @OptionGroup var storeArguments: StoreArguments

    @Option(help: "Tenant whose key seals the manifest.")
    var tenant: String = Tenant.default.name

    @Option(help: "Platform to pick from a multi-platform image (os/arch[/variant]).")
    var platform: String = "linux/amd64"

    @Option(help: "Chunk size in bytes.")
    var chunkSize: UInt64 = Flattener.defaultChunkSize

    @Option(help: "Chunks sealed and uploaded at once.")
    var concurrency: Int = 8

    @Option(help: "A function name to point at the pushed manifest (thaw run NAME starts it).")
    var name: String?

    func run() async throws {
        do {
            let functionName = try name.map(FunctionName.init)
            let report = try await PushCommand.run(image: image, store: storeArguments, tenant: tenant,
                                                   platform: platform, chunkSize: chunkSize, concurrency: concurrency,
                                                   name: functionName)
            print(PushCommand.describe(report, store: storeArguments.storeLocation))
            if let functionName { print("  name: \(functionName) → \(report.manifestID)") }
        } catch {
            throw ValidationFailure(CommandErrors.describe(error))
        }
    }
}

enum PushCommand {
    /// Pushes into the active root (or `--root`), records the manifest in the metadata, and
    /// points `name` at it. The metadata is opened first, so a push never uploads into a store
    /// whose metadata cannot be reached.
    static func run(image: String, store arguments: StoreArguments, tenant: String, platform: String,
                    chunkSize: UInt64, concurrency: Int, name: FunctionName? = nil) async throws -> PushReport {
        try await arguments.withMetadata(create: true) { metadata in
            let metadata = metadata!
            var options = PushOptions()
            if let root = arguments.root {
                options.root = try RootID(root)
            } else {
                options.root = try await metadata.activeRoot().id
            }
            let report = try await push(image: image, store: arguments, tenant: tenant, platform: platform, chunkSize: chunkSize,
                                        concurrency: concurrency, options: options)
            let h = report.header
            let now = Date()
            do {
                try await metadata.addManifest(ManifestRecord(id: report.manifestID, root: h.root, tenant: h.tenant, imageSize: h.imageSize,
                                                              chunkCount: h.chunkCount, createdAt: now))
                if let name {
                    try await metadata.setFunction(FunctionRecord(name: name, manifestID: report.manifestID, root: h.root, tenant: h.tenant,
                                                                  updatedAt: now))
                }
            } catch {
                throw ValidationFailure("manifest \(report.manifestID) is stored, but recording it in \(metadata.location) failed (push again to record it): \(CommandErrors.describe(error))")
            }
            return report
        }
    }

    static func push(image: String, store arguments: StoreArguments, tenant: String, platform: String,
                     chunkSize: UInt64, concurrency: Int, options: PushOptions) async throws -> PushReport {
        let reference = try ImageReference(parsing: image) { path in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
        }
        let opened = try Image.open(reference, platform: try Platform(parsing: platform))
        var options = options
        options.tenant = try Tenant(tenant)
        options.chunkSize = chunkSize
        guard concurrency >= 1 else { throw ValidationFailure("--concurrency must be at least 1") }
        options.concurrency = concurrency
        let store = try await arguments.open(create: true)
        let display = ProgressLine()
        var pusher = Pusher(store: store, keys: arguments.keyProvider, options: options)
        if display.enabled {
            pusher.progress = { (p: PushProgress) in
                display.show("read \(mib(p.bytesRead)) · \(p.chunksNew) new · \(p.chunksPresent) present · \(p.chunksZero) zero")
            }
        }
        let report = try await pusher.push(opened)
        display.clear()
        return report
    }

    static func describe(_ report: PushReport, store: String) -> String {
        let p = report.progress
        let h = report.header
        return [
            "pushed sha256:\(Hex.encode(h.imageDigest)) as manifest \(report.manifestID)",
            "  store: \(store) (root \(h.root), tenant \(h.tenant), key \(report.manifestKey))",
            "  image: \(mib(h.imageSize)) in \(h.chunkCount) chunks of \(h.chunkSize / 1024) KiB",
            "  chunks: \(p.chunksNew) new (\(mib(p.bytesUploaded)) uploaded), \(p.chunksPresent) already stored, \(p.chunksZero) zero, \(p.chunksReused) from layer records",
            "  layers: \(h.layers.count), \(report.layersReused) reused without reading; \(mib(p.bytesRead)) of file data read",
            "  time: \(String(format: "%.2f", report.seconds)) s",
        ].joined(separator: "\n")
    }
}

func mib(_ bytes: UInt64) -> String { String(format: "%.1f MiB", Double(bytes) / 1_048_576) }

/// One clear line for any error a command can meet.
enum CommandErrors {
    static func describe(_ error: any Error) -> String {
        switch error {
        case let error as ValidationFailure: error.description
        case let error as any CustomStringConvertible: error.description
        default: "\(error)"
        }
    }
}
