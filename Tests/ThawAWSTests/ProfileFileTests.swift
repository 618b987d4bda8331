import Testing
import ThawAWS

/// Parsing `~/.aws/config` and `~/.aws/credentials`.
@Suite struct ProfileFileTests {
    static func config(_ text: String) throws -> AWSProfileFile {
        try AWSProfileFile(parsing: text, kind: .config, path: "/home/me/.aws/config")
    }

    static func credentials(_ text: String) throws -> AWSProfileFile {
        try AWSProfileFile(parsing: text, kind: .credentials, path: "/home/me/.aws/credentials")
    }

    @Test func readsProfilesCommentsAndNestedS3Settings() throws {
        let file = try Self.config("""
            # a comment
            ; another comment
            [default]
            region = eu-west-1
            output=json

            [profile dev]   # trailing comment
            Region = us-east-2 ; inline comment
            endpoint_url = http://localhost:9000
            s3 =
              addressing_style = path
              # a comment among nested settings
              max_concurrent_requests = 10
            services = local

            [services local]
            s3 =
              endpoint_url = http://minio:9000

            [sso-session corp]
            sso_region = us-east-1

            [stray]
            region = ignored
            """)
        #expect(Set(file.profiles.keys) == ["default", "dev"])
        #expect(file.profiles["default"]?.setting("region")?.value == "eu-west-1")
        #expect(file.profiles["default"]?.setting("output")?.value == "json")

        let dev = try #require(file.profiles["dev"])
        #expect(dev.setting("region")?.value == "us-east-2")
        #expect(dev.setting("REGION")?.value == "us-east-2")
        #expect(dev.setting("endpoint_url")?.value == "http://localhost:9000")
        #expect(dev.setting("addressing_style", in: "s3")?.value == "path")
        #expect(dev.setting("max_concurrent_requests", in: "s3")?.value == "10")
        #expect(dev.setting("s3") == nil, "a setting with only nested lines has no value of its own")
        #expect(dev.setting("addressing_style", in: "s3")?.location == "/home/me/.aws/config:11")
        #expect(dev.setting("services")?.value == "local")

        #expect(Set(file.services.keys) == ["local"])
        #expect(file.services["local"]?.setting("endpoint_url", in: "s3")?.value == "http://minio:9000")
    }

    @Test func credentialsFileNamesSectionsWithoutPrefix() throws {
        let file = try Self.credentials("""
            [default]
            aws_access_key_id = AKIDDEFAULT
            aws_secret_access_key = se#cr;et/+=
            [dev]
            aws_access_key_id=AKIDDEV
            [profile odd]
            aws_access_key_id = AKIDODD
            """)
        #expect(Set(file.profiles.keys) == ["default", "dev", "profile odd"])
        #expect(file.profiles["default"]?.setting("aws_secret_access_key")?.value == "se#cr;et/+=",
                "# and ; without whitespace before them are part of the value")
        #expect(file.profiles["dev"]?.setting("aws_access_key_id")?.value == "AKIDDEV")
        #expect(file.sectionHeader(forProfile: "dev") == "[dev]")
    }

    @Test func configFileAcceptsProfileDefaultAndNamesHeaders() throws {
        let file = try Self.config("[profile default]\nregion = a\n[profile\tdev]\nregion = b\n")
        #expect(file.profiles["default"]?.setting("region")?.value == "a")
        #expect(file.profiles["dev"]?.setting("region")?.value == "b")
        #expect(file.sectionHeader(forProfile: "dev") == "[profile dev]")
        #expect(file.sectionHeader(forProfile: "default") == "[default]")
    }

    @Test func handlesCRLFAndAByteOrderMark() throws {
        let file = try Self.credentials("\u{FEFF}[default]\r\naws_access_key_id = AKID\r\n\r\n# done\r\n")
        let setting = try #require(file.profiles["default"]?.setting("aws_access_key_id"))
        #expect(setting.value == "AKID")
        #expect(setting.line == 2)
    }

    @Test func indentedLinesContinueAValue() throws {
        let file = try Self.config("[default]\nnote = first\n  second\n\tthird\nregion = r\n")
        #expect(file.profiles["default"]?.setting("note")?.value == "first\nsecond\nthird")
        #expect(file.profiles["default"]?.setting("region")?.value == "r")
    }

    @Test func repeatedSectionsMergeAndTheLastValueWins() throws {
        let file = try Self.config("""
            [default]
            region = first
            s3 =
              addressing_style = virtual
            [default]
            region = second
            output = text
            s3 = flat
            """)
        let profile = try #require(file.profiles["default"])
        #expect(profile.setting("region")?.value == "second")
        #expect(profile.setting("region")?.line == 6)
        #expect(profile.setting("output")?.value == "text")
        #expect(profile.setting("s3")?.value == "flat")
        #expect(profile.setting("addressing_style", in: "s3") == nil, "a reassigned setting drops its nested lines")
    }

    @Test func emptyValuesCountAsAbsentAndEmptySectionsExist() throws {
        let file = try Self.config("[default]\nregion =\nendpoint_url = # only a comment\n[profile empty]\n")
        #expect(file.profiles["default"]?.setting("region") == nil)
        #expect(file.profiles["default"]?.settings["region"]?.value == "")
        #expect(file.profiles["default"]?.setting("endpoint_url") == nil)
        #expect(file.profiles["empty"] != nil)
    }

    @Test(arguments: [
        ("region = us-east-1\n[default]\n", 1, "comes before any [section]"),
        ("[default]\nregion us-east-1\n", 2, "expected 'name = value'"),
        ("[default\nregion = x\n", 1, "no closing ']'"),
        ("[default]\n\n[ ]\n", 3, "no name"),
        ("[default] region = x\n", 1, "unexpected text after"),
        ("[default]\n= value\n", 2, "no name before '='"),
        ("[default]\ns3 =\n  addressing_style\n", 3, "expected 'name = value'"),
        ("[profile]\n", 1, "needs a name"),
    ])
    func malformedLinesNameTheFileAndLine(text: String, line: Int, reason: String) {
        do {
            _ = try Self.config(text)
            Issue.record("expected an error for \(text.debugDescription)")
        } catch let error as AWSConfigurationError {
            guard case .malformedLine(let file, let errorLine, let message) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(file == "/home/me/.aws/config")
            #expect(errorLine == line)
            #expect(message.contains(reason), "\(message)")
            #expect(error.description.hasPrefix("/home/me/.aws/config:\(line): "))
        } catch {
            Issue.record("unexpected error type \(error)")
        }
    }

    @Test func malformedLineMessagesDoNotEchoValues() {
        #expect(throws: AWSConfigurationError.self) {
            try Self.credentials("aws_secret_access_key = SECRETVALUE\n")
        }
        do {
            _ = try Self.credentials("aws_secret_access_key = SECRETVALUE\n")
        } catch {
            #expect(!"\(error)".contains("SECRETVALUE"))
            #expect("\(error)".contains("aws_secret_access_key"))
        }
    }
}
