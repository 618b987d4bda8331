import ArgumentParser
import Foundation
import ThawMetadata
import ThawSeal
import ThawStore

/// Where Thaw keeps its embedded defaults: `$THAW_HOME`, else /var/lib/thaw for root and
/// ~/.local/share/thaw for anyone else.
enum ThawHome {
    static var path: String {
        if let home = ProcessInfo.processInfo.environment["THAW_HOME"], !home.isEmpty { return home }
        if getuid() == 0 { return "/var/lib/thaw" }
        return NSHomeDirectory() + "/.local/share/thaw"
    }
}

/// The options every command that touches a store shares.
struct StoreArguments: ParsableArguments {
    @Option(help: "The store: a directory path, file:///PATH, or s3://BUCKET[/PREFIX]. (default: $THAW_HOME/store)")
    var store: String?

    @Option(help: "Directory of tenant key files (the local key provider). (default: $THAW_HOME/keys)")
    var keys: String?

    @Option(help: "The garbage-collection root to use. (default: for a push, the active root in the metadata; for reads, every root the metadata has not deleted, newest first; without metadata, \(RootID.initial))")
    var root: String?

    @Option(help: "Where roots, manifests and function names are kept: a file (PATH or sqlite:PATH) or postgres://USER@HOST[:PORT]/DATABASE. (default: STORE.metadata.sqlite beside a directory store, $THAW_HOME/metadata.sqlite for S3)")
    var metadata: String?

    @Option(help: "S3 endpoint URL, e.g. http://127.0.0.1:9000 (else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the config file, or AWS).")
    var endpoint: String?

    @Option(help: "S3 region (else AWS_REGION, AWS_DEFAULT_REGION, the config file, or us-east-1).")
    var region: String?

    @Option(help: "Profile in the AWS config and credentials files (else AWS_PROFILE or default).")
    var profile: String?

    @Option(help: "S3 access key id (else AWS_ACCESS_KEY_ID unless --profile is given, then the profile's credentials and config files).")
    var accessKeyId: String?

    @Option(help: "S3 secret access key, with --access-key-id. Other users can see command lines: prefer AWS_SECRET_ACCESS_KEY or the credentials file.")
    var secretAccessKey: String?

    @Option(help: "S3 session token for temporary keys given with --access-key-id (else none).")
    var sessionToken: String?

    @Option(help: "S3 addressing: path (bucket in the path), virtual (bucket in the host name) or auto (virtual on AWS, path elsewhere). (default: the profile's s3.addressing_style, else auto)")
    var addressingStyle: String?

    var storeLocation: String { store ?? ThawHome.path + "/store" }
    var keyProvider: LocalKeyProvider { LocalKeyProvider(directory: keys ?? ThawHome.path + "/keys") }
    var rootID: RootID { get throws { try RootID(root ?? RootID.initial.value) } }

    /// The roots a reader looks for a manifest id in: `--root` alone when given; else every
    /// root the metadata has not deleted, newest first (a copied-forward manifest has a new id in
    /// the new root, and an old id still names the original while its root lives); without
    /// metadata, the initial root.
    func readRoots(_ metadata: (any MetadataStore)?) async throws -> [RootID] {
        if root != nil { return [try rootID] }
        guard let metadata else { return [.initial] }
        let live = try await metadata.roots().filter { $0.state != .deleted }.map(\.id).reversed()
        return live.isEmpty ? [.initial] : Array(live)
    }

    /// Where the metadata lives: `--metadata`, else a file beside a directory store.
    var metadataLocation: MetadataLocation {
        get throws {
            if let metadata { return try MetadataLocation(parsing: metadata) }
            switch try StoreLocation(parsing: storeLocation) {
            case .directory(let path):
                let trimmed = path.count > 1 && path.hasSuffix("/") ? String(path.dropLast()) : path
                return .sqlite(path: trimmed + ".metadata.sqlite")
            case .s3(let bucket, let prefix):
                // One file per bucket and prefix, so names never mix across stores.
                let safePrefix = String(prefix.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" ? $0 : "_" })
                return .sqlite(path: ThawHome.path + "/metadata/s3-\(bucket)" + (prefix.isEmpty ? "" : "-" + safePrefix) + ".sqlite")
            }
        }
    }

    /// Opens the metadata store. Without `create`, a default SQLite file that does not exist
    /// yet gives nil rather than being made (read-only commands create nothing).
    func openMetadata(create: Bool) async throws -> (any MetadataStore)? {
        let location = try metadataLocation
        if !create, metadata == nil, case .sqlite(let path) = location, !FileManager.default.fileExists(atPath: path) { return nil }
        return try await location.open()
    }

    /// Runs `body` with the metadata store open, and closes it after.
    func withMetadata<T>(create: Bool, _ body: ((any MetadataStore)?) async throws -> T) async throws -> T {
        let store = try await openMetadata(create: create)
        do {
            let result = try await body(store)
            await store?.close()
            return result
        } catch {
            await store?.close()
            throw error
        }
    }

    /// Opens the store; a directory store is created when `create` is set (pushes), never for reads.
    func open(create: Bool) async throws -> any ChunkStore {
        let location = try StoreLocation(parsing: storeLocation)
        switch location {
        case .directory(let path):
            return try DirectoryStore(path: path, create: create)
        case .s3(let bucket, let prefix):
            let overrides = S3Overrides(endpoint: endpoint, region: region, profile: profile,
                                        accessKeyID: accessKeyId, secretAccessKey: secretAccessKey,
                                        sessionToken: sessionToken, addressingStyle: addressingStyle)
            return try S3Store(bucket: bucket, prefix: prefix, settings: try S3Settings.resolve(overrides, bucket: bucket))
        }
    }
}
