import Foundation

/// The precedence rules behind `AWSConfiguration.resolve`.
struct ConfigurationResolver {
    let overrides: AWSConfigurationOverrides
    let environment: [String: String]

    func resolve(readFile: (String) throws -> String?) throws(AWSConfigurationError) -> AWSConfiguration {
        let profileName = present(overrides.profile) ?? variable("AWS_PROFILE") ?? "default"
        let config = try SharedFile.load(
            kind: .config, configuredPath: variable("AWS_CONFIG_FILE"), defaultPath: "~/.aws/config",
            home: variable("HOME"), readFile: readFile)
        let credentialsFile = try SharedFile.load(
            kind: .credentials, configuredPath: variable("AWS_SHARED_CREDENTIALS_FILE"),
            defaultPath: "~/.aws/credentials", home: variable("HOME"), readFile: readFile)
        let profile = LayeredProfile(
            name: profileName, credentialsFile: credentialsFile, config: config)

        if profileName != "default", profile.layers.isEmpty {
            throw .profileNotFound(
                profile: profileName,
                searchedFiles: [credentialsFile, config].compactMap { $0.absenceOfProfile(profileName) })
        }

        let (credentials, source) = try resolveCredentials(profile: profile)
        return AWSConfiguration(
            profile: profileName, credentials: credentials, credentialsSource: source,
            region: present(overrides.region) ?? variable("AWS_REGION") ?? variable("AWS_DEFAULT_REGION")
                ?? profile.setting("region")?.value,
            endpointURL: try resolveEndpoint(profile: profile, config: config),
            s3AddressingStyle: try resolveAddressingStyle(profile: profile),
            configFilePath: config.path, credentialsFilePath: credentialsFile.path)
    }

    // MARK: Credentials

    private func resolveCredentials(profile: LayeredProfile) throws(AWSConfigurationError)
        -> (AWSCredentials, AWSCredentialsSource)
    {
        var searched: [String] = []

        let explicitToken = present(overrides.sessionToken)
        if let credentials = try pair(
            id: present(overrides.accessKeyID), secret: present(overrides.secretAccessKey), token: explicitToken,
            source: "the explicit values", idName: "the access key id", secretName: "the secret access key")
        {
            return (credentials, .explicit)
        }
        if explicitToken != nil {
            throw .incompleteCredentials(
                source: "the explicit values", missing: "the access key id and secret access key")
        }
        searched.append("explicit values: none given")

        if present(overrides.profile) != nil {
            searched.append("environment: skipped, because the profile '\(profile.name)' was chosen explicitly")
        } else if let credentials = try pair(
            id: variable("AWS_ACCESS_KEY_ID"), secret: variable("AWS_SECRET_ACCESS_KEY"),
            token: variable("AWS_SESSION_TOKEN"), source: "the environment",
            idName: "AWS_ACCESS_KEY_ID", secretName: "AWS_SECRET_ACCESS_KEY")
        {
            return (credentials, .environment)
        } else {
            searched.append("environment: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set")
        }

        for file in [profile.credentialsFile, profile.config] {
            if let reason = file.absenceOfProfile(profile.name) {
                searched.append(reason)
                continue
            }
            guard let parsed = file.parsed, let section = parsed.profiles[profile.name] else { continue }
            let source = "\(parsed.sectionHeader(forProfile: profile.name)) in \(parsed.path)"
            if let credentials = try pair(
                id: section.setting("aws_access_key_id")?.value,
                secret: section.setting("aws_secret_access_key")?.value,
                token: section.setting("aws_session_token")?.value, source: source,
                idName: "aws_access_key_id", secretName: "aws_secret_access_key")
            {
                let origin: AWSCredentialsSource = file.kind == .config
                    ? .configFile(path: parsed.path, profile: profile.name)
                    : .credentialsFile(path: parsed.path, profile: profile.name)
                return (credentials, origin)
            }
            searched.append("\(file.label): \(parsed.sectionHeader(forProfile: profile.name)) has no aws_access_key_id"
                + Self.unsupportedSourceNote(section))
        }
        throw .missingCredentials(profile: profile.name, searched: searched)
    }

    /// Both halves of a key pair from one place, nothing, or an error for half a pair.
    private func pair(
        id: String?, secret: String?, token: String?, source: String, idName: String, secretName: String
    ) throws(AWSConfigurationError) -> AWSCredentials? {
        switch (id, secret) {
        case (let id?, let secret?):
            return AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token)
        case (nil, nil):
            return nil
        case (_?, nil):
            throw .incompleteCredentials(source: source, missing: secretName)
        case (nil, _?):
            throw .incompleteCredentials(source: source, missing: idName)
        }
    }

    /// Profiles that obtain credentials another way (roles, SSO, helper processes) are common;
    /// saying so explains why a profile that works with the AWS CLI yields nothing here.
    private static func unsupportedSourceNote(_ section: AWSProfile) -> String {
        let other = ["role_arn", "sso_session", "sso_start_url", "credential_process", "web_identity_token_file"]
            .filter { section.setting($0) != nil }
        guard !other.isEmpty else { return "" }
        return " (it uses \(other.joined(separator: ", ")), which is not supported; "
            + "export temporary keys into the environment instead)"
    }

    // MARK: Endpoint and addressing

    private func resolveEndpoint(profile: LayeredProfile, config: SharedFile) throws(AWSConfigurationError) -> URL? {
        if let explicit = present(overrides.endpointURL) {
            return try endpoint(explicit, name: "the endpoint URL", location: "explicit value")
        }
        let ignoreConfigured = Self.isTrue(variable("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"))
            || Self.isTrue(profile.setting("ignore_configured_endpoint_urls")?.value)
        guard !ignoreConfigured else { return nil }
        for name in ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"] {
            if let value = variable(name) {
                return try endpoint(value, name: name, location: "environment")
            }
        }
        if let group = profile.setting("services")?.value,
           let setting = config.parsed?.services[group]?.setting("endpoint_url", in: "s3") {
            return try endpoint(setting.value, name: "s3.endpoint_url", location: setting.location)
        }
        if let setting = profile.setting("endpoint_url") {
            return try endpoint(setting.value, name: "endpoint_url", location: setting.location)
        }
        return nil
    }

    private func endpoint(_ value: String, name: String, location: String) throws(AWSConfigurationError) -> URL {
        guard let url = URL(string: value), let scheme = url.scheme?.lowercased(),
              scheme == "http" || scheme == "https", let host = url.host(), !host.isEmpty
        else {
            throw .invalidSetting(name: name, value: value, location: location,
                                  expected: "an http:// or https:// URL with a host")
        }
        return url
    }

    private func resolveAddressingStyle(profile: LayeredProfile) throws(AWSConfigurationError) -> S3AddressingStyle {
        if let explicit = overrides.s3AddressingStyle { return explicit }
        guard let setting = profile.setting("addressing_style", in: "s3") else { return .auto }
        guard let style = S3AddressingStyle(rawValue: setting.value.lowercased()) else {
            throw .invalidSetting(name: "s3.addressing_style", value: setting.value, location: setting.location,
                                  expected: "path, virtual or auto")
        }
        return style
    }

    // MARK: Values

    /// An environment variable; set-but-empty counts as unset, as it does for the AWS CLI.
    private func variable(_ name: String) -> String? {
        present(environment[name])
    }

    private func present(_ value: String?) -> String? {
        guard let value, !value.isEmpty else { return nil }
        return value
    }

    private static func isTrue(_ value: String?) -> Bool {
        value?.lowercased() == "true"
    }
}

/// A profile's sections from both files, the credentials file's taking precedence.
struct LayeredProfile {
    let name: String
    let credentialsFile: SharedFile
    let config: SharedFile

    var layers: [AWSProfile] {
        [credentialsFile.profile(named: name), config.profile(named: name)].compactMap { $0 }
    }

    func setting(_ key: String) -> AWSProfileSetting? {
        layers.lazy.compactMap { $0.setting(key) }.first
    }

    func setting(_ key: String, in parent: String) -> AWSProfileSetting? {
        layers.lazy.compactMap { $0.setting(key, in: parent) }.first
    }
}
