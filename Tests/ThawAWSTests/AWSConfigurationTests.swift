import Foundation
import Testing
import ThawAWS

/// Resolving credentials, region, endpoint and addressing style from explicit values, the
/// environment and the two shared files, with an injected environment and file system.
@Suite struct AWSConfigurationTests {
    static let home = ["HOME": "/home/me"]
    static let configPath = "/home/me/.aws/config"
    static let credentialsPath = "/home/me/.aws/credentials"

    static let credentialsFile = """
        [default]
        aws_access_key_id = AKIDFILE
        aws_secret_access_key = SECRETFILE
        aws_session_token = TOKENFILE
        region = region-from-credentials-file

        [dev]
        aws_access_key_id = AKIDDEV
        aws_secret_access_key = SECRETDEV
        """

    static let configFile = """
        [default]
        aws_access_key_id = AKIDCONFIG
        aws_secret_access_key = SECRETCONFIG
        region = region-from-config
        endpoint_url = http://profile-endpoint:9000
        s3 =
          addressing_style = path

        [profile dev]
        region = dev-region

        [profile only-config]
        aws_access_key_id = AKIDONLYCONFIG
        aws_secret_access_key = SECRETONLYCONFIG
        """

    static func resolve(
        _ overrides: AWSConfigurationOverrides = AWSConfigurationOverrides(),
        environment: [String: String] = [:],
        files: [String: String] = [configPath: configFile, credentialsPath: credentialsFile]
    ) throws(AWSConfigurationError) -> AWSConfiguration {
        try AWSConfiguration.resolve(
            overrides: overrides, environment: home.merging(environment) { _, new in new },
            readFile: { files[$0] })
    }

    static let environmentKeys = ["AWS_ACCESS_KEY_ID": "AKIDENV", "AWS_SECRET_ACCESS_KEY": "SECRETENV"]
    static let explicitKeys = AWSConfigurationOverrides(accessKeyID: "AKIDEXPLICIT", secretAccessKey: "SECRETEXPLICIT")

    // MARK: Credentials precedence

    @Test func explicitCredentialsWin() throws {
        var overrides = Self.explicitKeys
        overrides.sessionToken = "TOKENEXPLICIT"
        let configuration = try Self.resolve(overrides, environment: Self.environmentKeys)
        #expect(configuration.credentials == AWSCredentials(
            accessKeyID: "AKIDEXPLICIT", secretAccessKey: "SECRETEXPLICIT", sessionToken: "TOKENEXPLICIT"))
        #expect(configuration.credentialsSource == .explicit)
    }

    /// The token travels with its key pair: a token from the credentials file must not be
    /// attached to keys from the environment.
    @Test func environmentBeatsFilesAndKeepsItsOwnToken() throws {
        let configuration = try Self.resolve(environment: Self.environmentKeys)
        #expect(configuration.credentials == AWSCredentials(accessKeyID: "AKIDENV", secretAccessKey: "SECRETENV"))
        #expect(configuration.credentialsSource == .environment)

        var withToken = Self.environmentKeys
        withToken["AWS_SESSION_TOKEN"] = "TOKENENV"
        #expect(try Self.resolve(environment: withToken).credentials.sessionToken == "TOKENENV")
    }

    @Test func credentialsFileBeatsConfigFile() throws {
        let configuration = try Self.resolve()
        #expect(configuration.credentials == AWSCredentials(
            accessKeyID: "AKIDFILE", secretAccessKey: "SECRETFILE", sessionToken: "TOKENFILE"))
        #expect(configuration.credentialsSource == .credentialsFile(path: Self.credentialsPath, profile: "default"))
    }

    @Test func configFileIsTheLastResort() throws {
        let configuration = try Self.resolve(files: [Self.configPath: Self.configFile])
        #expect(configuration.credentials == AWSCredentials(accessKeyID: "AKIDCONFIG", secretAccessKey: "SECRETCONFIG"))
        #expect(configuration.credentialsSource == .configFile(path: Self.configPath, profile: "default"))

        let onlyConfig = try Self.resolve(AWSConfigurationOverrides(profile: "only-config"))
        #expect(onlyConfig.credentials.accessKeyID == "AKIDONLYCONFIG")
    }

    @Test func emptyEnvironmentVariablesCountAsUnset() throws {
        let configuration = try Self.resolve(environment: [
            "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_PROFILE": "", "AWS_REGION": "",
        ])
        #expect(configuration.credentials.accessKeyID == "AKIDFILE")
        #expect(configuration.profile == "default")
        #expect(configuration.region == "region-from-credentials-file")
    }

    // MARK: Profiles

    @Test func profileComesFromExplicitValueThenAWSProfile() throws {
        #expect(try Self.resolve(environment: ["AWS_PROFILE": "dev"]).credentials.accessKeyID == "AKIDDEV")
        let explicit = try Self.resolve(AWSConfigurationOverrides(profile: "dev"), environment: ["AWS_PROFILE": "nope"])
        #expect(explicit.profile == "dev")
        #expect(explicit.credentials.accessKeyID == "AKIDDEV")
        #expect(explicit.region == "dev-region", "a profile's settings come from both files")
    }

    /// As with the AWS CLI's `--profile`, an explicitly chosen profile overrides keys exported
    /// in the environment; `AWS_PROFILE` does not.
    @Test func explicitProfileIgnoresEnvironmentKeys() throws {
        let explicit = try Self.resolve(AWSConfigurationOverrides(profile: "dev"), environment: Self.environmentKeys)
        #expect(explicit.credentials.accessKeyID == "AKIDDEV")
        var environment = Self.environmentKeys
        environment["AWS_PROFILE"] = "dev"
        #expect(try Self.resolve(environment: environment).credentials.accessKeyID == "AKIDENV")
    }

    @Test func filePathsComeFromTheEnvironment() throws {
        let configuration = try Self.resolve(
            environment: ["AWS_CONFIG_FILE": "/etc/aws/config", "AWS_SHARED_CREDENTIALS_FILE": "~/keys"],
            files: ["/etc/aws/config": "[default]\nregion = custom\n",
                    "/home/me/keys": "[default]\naws_access_key_id = K\naws_secret_access_key = S\n"])
        #expect(configuration.configFilePath == "/etc/aws/config")
        #expect(configuration.credentialsFilePath == "/home/me/keys")
        #expect(configuration.credentials.accessKeyID == "K")
        #expect(configuration.region == "custom")
    }

    // MARK: Region, endpoint, addressing style

    @Test func regionPrecedence() throws {
        let files = [Self.configPath: Self.configFile, Self.credentialsPath: Self.credentialsFile]
        let both = ["AWS_REGION": "from-aws-region", "AWS_DEFAULT_REGION": "from-default-region"]
        #expect(try Self.resolve(AWSConfigurationOverrides(region: "explicit"), environment: both).region == "explicit")
        #expect(try Self.resolve(environment: both).region == "from-aws-region")
        #expect(try Self.resolve(environment: ["AWS_DEFAULT_REGION": "from-default-region"]).region == "from-default-region")
        #expect(try Self.resolve(files: files).region == "region-from-credentials-file")
        #expect(try Self.resolve(files: [Self.configPath: Self.configFile]).region == "region-from-config")
    }

    @Test func endpointPrecedence() throws {
        let environment = ["AWS_ENDPOINT_URL_S3": "http://s3-endpoint:1", "AWS_ENDPOINT_URL": "http://any-endpoint:2"]
        let explicit = try Self.resolve(AWSConfigurationOverrides(endpointURL: "https://explicit:3"), environment: environment)
        #expect(explicit.endpointURL == URL(string: "https://explicit:3"))
        #expect(try Self.resolve(environment: environment).endpointURL == URL(string: "http://s3-endpoint:1"))
        #expect(try Self.resolve(environment: ["AWS_ENDPOINT_URL": "http://any-endpoint:2"]).endpointURL
            == URL(string: "http://any-endpoint:2"))
        #expect(try Self.resolve().endpointURL == URL(string: "http://profile-endpoint:9000"))
        #expect(try Self.resolve(environment: ["AWS_PROFILE": "dev"]).endpointURL == nil)
    }

    @Test func servicesSectionGivesAnS3SpecificEndpoint() throws {
        let config = """
            [default]
            endpoint_url = http://general:1
            services = local
            [services local]
            s3 =
              endpoint_url = http://s3-only:2
            """
        let configuration = try Self.resolve(files: [Self.configPath: config, Self.credentialsPath: Self.credentialsFile])
        #expect(configuration.endpointURL == URL(string: "http://s3-only:2"))
    }

    @Test func configuredEndpointsCanBeIgnored() throws {
        let environment = ["AWS_ENDPOINT_URL": "http://any:1", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": "true"]
        #expect(try Self.resolve(environment: environment).endpointURL == nil)
        let explicit = try Self.resolve(AWSConfigurationOverrides(endpointURL: "http://explicit:1"), environment: environment)
        #expect(explicit.endpointURL == URL(string: "http://explicit:1"))
    }

    @Test func addressingStylePrecedence() throws {
        #expect(try Self.resolve().s3AddressingStyle == .path)
        #expect(try Self.resolve(AWSConfigurationOverrides(s3AddressingStyle: .virtual)).s3AddressingStyle == .virtual)
        #expect(try Self.resolve(environment: ["AWS_PROFILE": "dev"]).s3AddressingStyle == .auto)
    }

    // MARK: Errors

    @Test func missingCredentialsListsEveryPlace() {
        #expect(throws: AWSConfigurationError.missingCredentials(profile: "default", searched: [
            "explicit values: none given",
            "environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set",
            "credentials file /home/me/.aws/credentials: not found",
            "config file /home/me/.aws/config: [default] has no aws_access_key_id",
        ])) {
            try Self.resolve(files: [Self.configPath: "[default]\nregion = r\n"])
        }
    }

    @Test func missingCredentialsExplainsSkippedAndUnsupportedSources() {
        let config = "[profile sso]\nsso_session = corp\nrole_arn = arn:aws:iam::1:role/x\n"
        do {
            _ = try Self.resolve(AWSConfigurationOverrides(profile: "sso"), environment: Self.environmentKeys,
                                 files: [Self.configPath: config, Self.credentialsPath: "[default]\n"])
            Issue.record("expected missing credentials")
        } catch {
            guard case .missingCredentials(let profile, let searched) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(profile == "sso")
            #expect(searched.count == 4)
            #expect(searched[1].contains("skipped"))
            #expect(searched[2] == "credentials file /home/me/.aws/credentials: no [sso] section")
            #expect(searched[3].contains("[profile sso] has no aws_access_key_id (it uses role_arn, sso_session"))
            #expect(error.description.contains("  - credentials file /home/me/.aws/credentials: no [sso] section"))
        }
    }

    @Test func withoutHomeTheDefaultFilesCannotBeLocated() {
        do {
            _ = try AWSConfiguration.resolve(environment: [:], readFile: { _ in
                Issue.record("no file should be read without a path")
                return nil
            })
            Issue.record("expected missing credentials")
        } catch {
            guard case .missingCredentials(_, let searched) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(searched.contains("credentials file: no path, because neither AWS_SHARED_CREDENTIALS_FILE nor HOME is set"))
            #expect(searched.contains("config file: no path, because neither AWS_CONFIG_FILE nor HOME is set"))
        }
    }

    @Test func unknownProfileIsAnError() {
        #expect(throws: AWSConfigurationError.profileNotFound(profile: "typo", searchedFiles: [
            "credentials file /home/me/.aws/credentials: no [typo] section",
            "config file /home/me/.aws/config: no [profile typo] section",
        ])) {
            try Self.resolve(environment: ["AWS_PROFILE": "typo"])
        }
    }

    @Test func missingDefaultProfileIsNotAnErrorWhenKeysComeFromElsewhere() throws {
        let configuration = try Self.resolve(environment: Self.environmentKeys, files: [:])
        #expect(configuration.credentials.accessKeyID == "AKIDENV")
        #expect(configuration.region == nil)
        #expect(configuration.s3AddressingStyle == .auto)
    }

    @Test func halfAKeyPairIsAnError() {
        #expect(throws: AWSConfigurationError.incompleteCredentials(
            source: "the environment", missing: "AWS_SECRET_ACCESS_KEY")) {
            try Self.resolve(environment: ["AWS_ACCESS_KEY_ID": "AKIDENV"])
        }
        #expect(throws: AWSConfigurationError.incompleteCredentials(
            source: "the explicit values", missing: "the access key id")) {
            try Self.resolve(AWSConfigurationOverrides(secretAccessKey: "S"))
        }
        #expect(throws: AWSConfigurationError.incompleteCredentials(
            source: "the explicit values", missing: "the access key id and secret access key")) {
            try Self.resolve(AWSConfigurationOverrides(sessionToken: "T"))
        }
        #expect(throws: AWSConfigurationError.incompleteCredentials(
            source: "[default] in /home/me/.aws/credentials", missing: "aws_secret_access_key")) {
            try Self.resolve(files: [Self.credentialsPath: "[default]\naws_access_key_id = K\n"])
        }
    }

    @Test func malformedFileStopsResolution() {
        #expect(throws: AWSConfigurationError.malformedLine(
            file: Self.configPath, line: 2, reason: "expected 'name = value', a [section] header or a comment")) {
            try Self.resolve(Self.explicitKeys, files: [Self.configPath: "[default]\nregion\n"])
        }
    }

    @Test func unreadableFileNamesThePath() {
        struct Denied: Error, CustomStringConvertible {
            var description: String { "permission denied" }
        }
        #expect(throws: AWSConfigurationError.unreadableFile(path: Self.configPath, reason: "permission denied")) {
            try AWSConfiguration.resolve(environment: Self.home, readFile: { _ in throw Denied() })
        }
    }

    @Test func invalidValuesNameTheirLocation() {
        #expect(throws: AWSConfigurationError.invalidSetting(
            name: "s3.addressing_style", value: "sideways", location: "\(Self.configPath):3",
            expected: "path, virtual or auto")) {
            try Self.resolve(Self.explicitKeys, files: [Self.configPath: "[default]\ns3 =\n  addressing_style = sideways\n"])
        }
        #expect(throws: AWSConfigurationError.invalidSetting(
            name: "AWS_ENDPOINT_URL", value: "localhost:9000", location: "environment",
            expected: "an http:// or https:// URL with a host")) {
            try Self.resolve(environment: ["AWS_ENDPOINT_URL": "localhost:9000"])
        }
        #expect(throws: AWSConfigurationError.self) {
            try Self.resolve(AWSConfigurationOverrides(endpointURL: "ftp://host/"))
        }
    }

    @Test func requireRegionExplainsWhereItLooked() throws {
        let configuration = try Self.resolve(environment: Self.environmentKeys, files: [:])
        #expect(throws: AWSConfigurationError.missingRegion(profile: "default", searched: [
            "explicit value: none given",
            "environment: AWS_REGION and AWS_DEFAULT_REGION are not set",
            "credentials file /home/me/.aws/credentials: no region in profile 'default'",
            "config file /home/me/.aws/config: no region in profile 'default'",
        ])) {
            try configuration.requireRegion()
        }
        #expect(try Self.resolve().requireRegion() == "region-from-credentials-file")
    }
}
