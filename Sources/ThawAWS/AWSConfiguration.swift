public import Foundation

/// The AWS settings in effect, resolved the way the AWS CLI and SDKs resolve them.
///
/// Each value comes from the first place that has it: explicit values, then environment
/// variables, then the shared credentials file, then the shared config file.
public struct AWSConfiguration: Sendable, Hashable {
    public var profile: String
    public var credentials: AWSCredentials
    public var credentialsSource: AWSCredentialsSource
    /// `nil` when nothing configures one; `requireRegion()` turns that into an error that says
    /// where it looked.
    public var region: String?
    /// A custom endpoint (MinIO, LocalStack, a VPC endpoint); `nil` means AWS's own.
    public var endpointURL: URL?
    public var s3AddressingStyle: S3AddressingStyle
    /// The files consulted, `nil` when a path could not be formed (no `HOME`).
    public var configFilePath: String?
    public var credentialsFilePath: String?

    public init(
        profile: String = "default", credentials: AWSCredentials, credentialsSource: AWSCredentialsSource = .explicit,
        region: String? = nil, endpointURL: URL? = nil, s3AddressingStyle: S3AddressingStyle = .auto,
        configFilePath: String? = nil, credentialsFilePath: String? = nil
    ) {
        self.profile = profile
        self.credentials = credentials
        self.credentialsSource = credentialsSource
        self.region = region
        self.endpointURL = endpointURL
        self.s3AddressingStyle = s3AddressingStyle
        self.configFilePath = configFilePath
        self.credentialsFilePath = credentialsFilePath
    }

    /// Resolves from an injected environment and file reader, so nothing here touches the
    /// process or the disk.
    ///
    /// - Parameters:
    ///   - environment: variables such as `AWS_PROFILE`, `AWS_REGION` and `HOME`.
    ///   - readFile: the contents of the file at a path, or `nil` when there is no such file.
    public static func resolve(
        overrides: AWSConfigurationOverrides = AWSConfigurationOverrides(),
        environment: [String: String],
        readFile: (String) throws -> String?
    ) throws(AWSConfigurationError) -> AWSConfiguration {
        try ConfigurationResolver(overrides: overrides, environment: environment).resolve(readFile: readFile)
    }

    /// The region, or an error listing every place that could have set it.
    public func requireRegion() throws(AWSConfigurationError) -> String {
        if let region { return region }
        var searched = ["explicit value: none given", "environment: AWS_REGION and AWS_DEFAULT_REGION are not set"]
        if let credentialsFilePath {
            searched.append("credentials file \(credentialsFilePath): no region in profile '\(profile)'")
        }
        if let configFilePath {
            searched.append("config file \(configFilePath): no region in profile '\(profile)'")
        }
        throw .missingRegion(profile: profile, searched: searched)
    }
}
