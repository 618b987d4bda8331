/// Values given directly (from command-line options); each one that is set beats the
/// environment and both files.
public struct AWSConfigurationOverrides: Sendable, Hashable {
    /// Choosing a profile explicitly also makes the environment's access keys be ignored, as
    /// the AWS CLI does with `--profile`: the user asked for that profile's identity.
    public var profile: String?
    public var accessKeyID: String?
    public var secretAccessKey: String?
    public var sessionToken: String?
    public var region: String?
    public var endpointURL: String?
    public var s3AddressingStyle: S3AddressingStyle?

    public init(
        profile: String? = nil, accessKeyID: String? = nil, secretAccessKey: String? = nil,
        sessionToken: String? = nil, region: String? = nil, endpointURL: String? = nil,
        s3AddressingStyle: S3AddressingStyle? = nil
    ) {
        self.profile = profile
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.region = region
        self.endpointURL = endpointURL
        self.s3AddressingStyle = s3AddressingStyle
    }
}
