import ArgumentParser
import Foundation
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

    @Option(help: "The garbage-collection root to use.")
    var root: String = RootID.initial.value

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
    var rootID: RootID { get throws { try RootID(root) } }

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
