import Foundation
import ThawAWS

/// What the user may say on the command line; anything left nil comes from the environment and
/// the AWS config files, as the AWS CLI resolves it.
public struct S3Overrides: Sendable {
    public var endpoint: String?
    public var region: String?
    public var profile: String?
    public var accessKeyID: String?
    public var secretAccessKey: String?
    public var sessionToken: String?
    public var addressingStyle: String?

    public init(endpoint: String? = nil, region: String? = nil, profile: String? = nil, accessKeyID: String? = nil,
                secretAccessKey: String? = nil, sessionToken: String? = nil, addressingStyle: String? = nil) {
        self.endpoint = endpoint
        self.region = region
        self.profile = profile
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.addressingStyle = addressingStyle
    }
}

/// How an `S3Store` reaches its server.
public struct S3Settings: Sendable {
    public enum Addressing: String, Sendable {
        /// `http://endpoint/bucket/key`: what most S3-compatible servers expect.
        case path
        /// `http://bucket.endpoint/key`: what AWS prefers.
        case virtual
    }

    public var scheme: String
    public var host: String
    public var port: Int?
    public var region: String
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?
    public var addressing: Addressing
    /// Deadline of one request, in seconds, until the reply's status and headers arrive. The
    /// body must then keep coming: a pause of more than `S3Store.idleTimeout` fails the attempt.
    public var responseTimeout: Double = 60
    /// Attempts per request, the first included, before a retryable failure is an error.
    public var maxAttempts = 7
    /// First backoff ceiling in seconds; it doubles per attempt up to 5 s.
    public var retryBase = 0.1
    /// `max-keys` for listings (nil: the server's default, 1000 on S3).
    public var listPageSize: Int?

    public init(endpoint: String, region: String, accessKeyID: String, secretAccessKey: String,
                sessionToken: String? = nil, addressing: Addressing) throws {
        guard let url = URLComponents(string: endpoint), let scheme = url.scheme, scheme == "http" || scheme == "https",
              let host = url.host, !host.isEmpty else {
            throw StoreError(.invalidLocation, "S3 endpoint '\(endpoint)' is not an http:// or https:// URL")
        }
        guard url.path.isEmpty || url.path == "/" else {
            throw StoreError(.invalidLocation, "S3 endpoint '\(endpoint)' has a path; give the bucket and prefix in the s3:// location")
        }
        self.scheme = scheme
        self.host = host
        self.port = url.port
        self.region = region
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.addressing = addressing
    }

    /// Resolves settings from `overrides`, then the environment and the AWS config files, as
    /// the AWS CLI does. Without an endpoint anywhere, the store is AWS itself:
    /// `https://s3.REGION.amazonaws.com`, region us-east-1 unless one is configured.
    public static func resolve(_ overrides: S3Overrides, bucket: String? = nil) throws -> S3Settings {
        var style: S3AddressingStyle?
        if let text = overrides.addressingStyle {
            guard let parsed = S3AddressingStyle(rawValue: text.lowercased()) else {
                throw StoreError(.invalidLocation, "S3 addressing style '\(text)' is not path, virtual or auto")
            }
            style = parsed
        }
        let configuration: AWSConfiguration
        do {
            configuration = try AWSConfiguration.fromProcessEnvironment(overrides: AWSConfigurationOverrides(
                profile: overrides.profile, accessKeyID: overrides.accessKeyID, secretAccessKey: overrides.secretAccessKey,
                sessionToken: overrides.sessionToken, region: overrides.region, endpointURL: overrides.endpoint, s3AddressingStyle: style))
        } catch {
            throw StoreError(.invalidLocation, "S3 settings: \(error)")
        }
        let region = configuration.region ?? "us-east-1"
        let endpoint = configuration.endpointURL?.absoluteString ?? "https://s3.\(region).amazonaws.com"
        let addressing: Addressing
        switch configuration.s3AddressingStyle {
        case .path: addressing = .path
        case .virtual: addressing = .virtual
        case .auto:
            // bucket.with.dots.s3.amazonaws.com is not covered by AWS's wildcard certificate.
            let dotted = bucket?.contains(".") == true
            addressing = configuration.endpointURL == nil && !dotted ? .virtual : .path
        }
        let credentials = configuration.credentials
        return try S3Settings(endpoint: endpoint, region: region, accessKeyID: credentials.accessKeyID,
                              secretAccessKey: credentials.secretAccessKey, sessionToken: credentials.sessionToken,
                              addressing: addressing)
    }
}

extension S3Settings: CustomStringConvertible, CustomReflectable {
    /// Everything but the secrets, so that settings can be printed, dumped or diffed in a test
    /// failure without leaking them.
    public var description: String {
        "S3Settings(\(scheme)://\(host)\(port.map { ":\($0)" } ?? ""), region \(region), \(addressing) addressing, "
            + "access key \(accessKeyID), secret access key <redacted>\(sessionToken == nil ? "" : ", session token <redacted>"))"
    }

    public var customMirror: Mirror { Mirror(self, children: ["description": description]) }
}
