public import Foundation

// The JSON of the AWS Lambda REST API (2015-03-31) that container functions use, with the
// member names Lambda gives them. Only what Thaw reads or answers is modelled; clients send
// more, which decoding ignores.

public struct EnvironmentWire: Codable, Sendable, Equatable {
    public var variables: [String: String]?
    enum CodingKeys: String, CodingKey { case variables = "Variables" }
}

public struct ImageConfigWire: Codable, Sendable, Equatable {
    public var entryPoint: [String]?
    public var command: [String]?
    public var workingDirectory: String?
    enum CodingKeys: String, CodingKey {
        case entryPoint = "EntryPoint", command = "Command", workingDirectory = "WorkingDirectory"
    }
}

public struct CreateFunctionRequest: Codable, Sendable {
    public struct Code: Codable, Sendable {
        public var imageURI: String?
        public var zipFile: String?
        public var s3Bucket: String?
        enum CodingKeys: String, CodingKey { case imageURI = "ImageUri", zipFile = "ZipFile", s3Bucket = "S3Bucket" }
    }
    public var functionName: String
    public var role: String?
    public var code: Code
    public var packageType: String?
    public var description: String?
    public var timeout: Int?
    public var memorySize: Int?
    public var environment: EnvironmentWire?
    public var imageConfig: ImageConfigWire?
    public var architectures: [String]?
    enum CodingKeys: String, CodingKey {
        case functionName = "FunctionName", role = "Role", code = "Code", packageType = "PackageType",
             description = "Description", timeout = "Timeout", memorySize = "MemorySize", environment = "Environment",
             imageConfig = "ImageConfig", architectures = "Architectures"
    }
}

public struct UpdateFunctionCodeRequest: Codable, Sendable {
    public var imageURI: String?
    public var zipFile: String?
    public var s3Bucket: String?
    public var dryRun: Bool?
    public var revisionID: String?
    public var architectures: [String]?
    enum CodingKeys: String, CodingKey {
        case imageURI = "ImageUri", zipFile = "ZipFile", s3Bucket = "S3Bucket", dryRun = "DryRun",
             revisionID = "RevisionId", architectures = "Architectures"
    }
}

public struct FunctionConfiguration: Codable, Sendable, Equatable {
    public struct ImageConfigResponse: Codable, Sendable, Equatable {
        public var imageConfig: ImageConfigWire
        enum CodingKeys: String, CodingKey { case imageConfig = "ImageConfig" }
    }
    public var functionName: String
    public var functionARN: String
    public var role: String
    public var description: String
    public var codeSize: UInt64
    public var codeSHA256: String
    public var timeout: Int
    public var memorySize: Int
    public var lastModified: String
    public var version = "$LATEST"
    public var environment: EnvironmentWire?
    public var revisionID: String
    public var state = "Active"
    public var lastUpdateStatus = "Successful"
    public var packageType = "Image"
    public var imageConfigResponse: ImageConfigResponse?
    public var architectures = ["x86_64"]
    enum CodingKeys: String, CodingKey {
        case functionName = "FunctionName", functionARN = "FunctionArn", role = "Role", description = "Description",
             codeSize = "CodeSize", codeSHA256 = "CodeSha256", timeout = "Timeout", memorySize = "MemorySize",
             lastModified = "LastModified", version = "Version", environment = "Environment", revisionID = "RevisionId",
             state = "State", lastUpdateStatus = "LastUpdateStatus", packageType = "PackageType",
             imageConfigResponse = "ImageConfigResponse", architectures = "Architectures"
    }
}

public struct GetFunctionResponse: Codable, Sendable, Equatable {
    public struct Code: Codable, Sendable, Equatable {
        public var repositoryType = "Thaw"
        public var imageURI: String
        public var resolvedImageURI: String
        enum CodingKeys: String, CodingKey {
            case repositoryType = "RepositoryType", imageURI = "ImageUri", resolvedImageURI = "ResolvedImageUri"
        }
    }
    public var configuration: FunctionConfiguration
    public var code: Code
    enum CodingKeys: String, CodingKey { case configuration = "Configuration", code = "Code" }
}

public struct ListFunctionsResponse: Codable, Sendable, Equatable {
    public var functions: [FunctionConfiguration]
    public var nextMarker: String?
    enum CodingKeys: String, CodingKey { case functions = "Functions", nextMarker = "NextMarker" }
}

/// Lambda's `LastModified`: `2026-12-05T19:30:00.000+0000`.
enum LambdaTime {
    static func format(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        let seconds = milliseconds / 1000
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let fraction = String(milliseconds % 1000)
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):"
            + "\(two(parts.tm_min)):\(two(parts.tm_sec)).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)+0000"
    }
}
