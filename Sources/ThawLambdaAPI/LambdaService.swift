public import Foundation
public import ThawMetadata
public import ThawSeal

/// The Lambda API's operations on Thaw's functions, apart from HTTP: a function is a name in
/// Thaw's metadata pointing at a pushed manifest, with its Lambda settings beside it.
public struct LambdaService: Sendable {
    public var metadata: any MetadataStore
    public var code: any FunctionCodeSource
    public var invoker: any FunctionInvoker
    public var tenant: Tenant
    public var region: String
    public var account: String
    public var clock: @Sendable () -> Date

    public init(metadata: any MetadataStore, code: any FunctionCodeSource, invoker: any FunctionInvoker,
                tenant: Tenant = .default, region: String, account: String = "000000000000",
                clock: @escaping @Sendable () -> Date = { Date() }) {
        self.metadata = metadata
        self.code = code
        self.invoker = invoker
        self.tenant = tenant
        self.region = region
        self.account = account
        self.clock = clock
    }

    func arn(_ name: String) -> String { "arn:aws:lambda:\(region):\(account):function:\(name)" }

    /// A function name as a path gives it: the name, or its ARN (full or partial), with no
    /// qualifier other than `$LATEST`.
    func name(from text: String) throws(LambdaError) -> FunctionName {
        var text = text
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        if parts.count >= 7, parts[0] == "arn", parts[2] == "lambda", parts[5] == "function" {
            guard parts.count == 7 || (parts.count == 8 && parts[7] == "$LATEST") else {
                throw .invalidParameter("Thaw serves only $LATEST: \(text)")
            }
            text = parts[6]
        } else if parts.count == 3, parts[1] == "function" {
            text = parts[2]
        } else if parts.count == 2, parts[1] == "$LATEST" {
            text = parts[0]
        }
        do {
            return try FunctionName(text)
        } catch {
            throw .invalidParameter("1 validation error detected: Value '\(text)' at 'functionName' failed to satisfy constraint: \(error)")
        }
    }

    // MARK: Operations

    public func createFunction(_ request: CreateFunctionRequest) async throws -> FunctionConfiguration {
        let name = try name(from: request.functionName)
        guard request.packageType == nil || request.packageType == "Image" else {
            throw LambdaError.invalidParameter("Thaw runs container images: PackageType must be Image, not \(request.packageType!)")
        }
        guard request.code.zipFile == nil, request.code.s3Bucket == nil else {
            throw LambdaError.invalidParameter("Thaw runs container images: give Code.ImageUri, not a .zip file")
        }
        guard let imageURI = request.code.imageURI, !imageURI.isEmpty else {
            throw LambdaError.invalidParameter("Code.ImageUri is required for PackageType Image")
        }
        try Self.checkArchitectures(request.architectures)
        var settings = FunctionSettings(imageURI: imageURI, lastModified: clock())
        settings.description = request.description ?? ""
        settings.role = request.role ?? ""
        settings.timeout = request.timeout ?? settings.timeout
        settings.memorySize = request.memorySize ?? settings.memorySize
        settings.environment = request.environment?.variables ?? [:]
        settings.entryPoint = request.imageConfig?.entryPoint
        settings.command = request.imageConfig?.command
        settings.workingDirectory = request.imageConfig?.workingDirectory
        try Self.check(settings)
        // Two creations of one name at once, on this agent or another sharing the metadata:
        // the lease lets one through, and the other is told the function exists.
        let lease = "create-function \(name.value)", holder = UUID().uuidString
        guard try await metadata.acquireLease(lease, holder: holder, now: clock(), duration: Self.creationLease) else {
            throw LambdaError.conflict("Function already exist: \(name) (another CreateFunction of it is under way)")
        }
        do {
            if try await metadata.function(named: name) != nil {
                throw LambdaError.conflict("Function already exist: \(name)")
            }
            let resolved = try await code.resolve(imageURI: imageURI)
            settings.codeSize = resolved.imageSize
            settings.codeSHA256 = resolved.manifestID
            try await store(name: name, resolved: resolved, settings: settings)
            try? await metadata.releaseLease(lease, holder: holder)
            return configuration(name: name, manifestID: resolved.manifestID, settings: settings)
        } catch {
            try? await metadata.releaseLease(lease, holder: holder)
            throw error
        }
    }

    /// How long a CreateFunction may hold its name (a push of a large image included) before
    /// another may take it: a creator that died frees the name after this.
    static let creationLease: Duration = .seconds(900)

    public func getFunction(_ text: String) async throws -> GetFunctionResponse {
        let (record, settings) = try await load(text)
        return GetFunctionResponse(
            configuration: configuration(name: record.name, manifestID: Self.codeSHA256(of: record, settings: settings), settings: settings),
            code: .init(imageURI: settings.imageURI, resolvedImageURI: "thaw:\(record.root.value)/\(record.manifestID)"))
    }

    /// Functions in name order, `maxItems` at a time (Lambda's default and limit: 50).
    public func listFunctions(marker: String?, maxItems: Int?) async throws -> ListFunctionsResponse {
        let limit = maxItems ?? 50
        guard (1...10_000).contains(limit) else {
            throw LambdaError.invalidParameter("MaxItems must be from 1 to 10000, not \(limit)")
        }
        let all = try await metadata.functions()
        let after = all.filter { marker == nil || $0.name.value > marker! }
        var page: [FunctionConfiguration] = []
        for record in after.prefix(limit) {
            let settings = try await settings(of: record)
            page.append(configuration(name: record.name, manifestID: Self.codeSHA256(of: record, settings: settings), settings: settings))
        }
        let more = after.count > limit
        return ListFunctionsResponse(functions: page, nextMarker: more ? page.last?.functionName : nil)
    }

    public func updateFunctionCode(_ text: String, _ request: UpdateFunctionCodeRequest) async throws -> FunctionConfiguration {
        var (record, settings) = try await load(text)
        guard request.zipFile == nil, request.s3Bucket == nil else {
            throw LambdaError.invalidParameter("Thaw runs container images: give ImageUri, not a .zip file")
        }
        guard let imageURI = request.imageURI, !imageURI.isEmpty else {
            throw LambdaError.invalidParameter("ImageUri is required for a function of PackageType Image")
        }
        try Self.checkArchitectures(request.architectures)
        if let revision = request.revisionID, revision != String(settings.revision) {
            throw LambdaError(status: 412, type: "PreconditionFailedException",
                              message: "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id")
        }
        let resolved = try await code.resolve(imageURI: imageURI)
        settings.codeSHA256 = resolved.manifestID
        if request.dryRun == true {
            return configuration(name: record.name, manifestID: resolved.manifestID, settings: settings)
        }
        settings.imageURI = imageURI
        settings.codeSize = resolved.imageSize
        settings.lastModified = clock()
        settings.revision += 1
        record.manifestID = resolved.manifestID
        try await store(name: record.name, resolved: resolved, settings: settings)
        await invoker.forget(record.name)
        return configuration(name: record.name, manifestID: resolved.manifestID, settings: settings)
    }

    public func deleteFunction(_ text: String) async throws {
        let name = try name(from: text)
        guard try await metadata.removeFunction(named: name) else {
            throw LambdaError.functionNotFound(name.value, arn: arn(name.value))
        }
        await invoker.forget(name)
    }

    /// Runs the function with `event`; the outcome says whether its handler failed.
    public func invoke(_ text: String, event: [UInt8]) async throws -> InvocationOutcome {
        let (record, settings) = try await load(text)
        return try await invoker.invoke(record, settings: settings, event: event)
    }

    /// Checks that the function exists, for `Event` and `DryRun` invocations.
    public func function(_ text: String) async throws -> (FunctionRecord, FunctionSettings) {
        try await load(text)
    }

    // MARK: Parts

    func load(_ text: String) async throws -> (FunctionRecord, FunctionSettings) {
        let name = try name(from: text)
        guard let record = try await metadata.function(named: name) else {
            throw LambdaError.functionNotFound(name.value, arn: arn(name.value))
        }
        return (record, try await settings(of: record))
    }

    /// A name made by `thaw push --name` has no settings yet: Lambda's defaults, its manifest as the code.
    func settings(of record: FunctionRecord) async throws -> FunctionSettings {
        guard let document = try await metadata.functionSettings(named: record.name) else {
            return FunctionSettings(imageURI: record.manifestID, lastModified: record.updatedAt)
        }
        do {
            return try FunctionSettings.decode(document)
        } catch {
            throw LambdaError.service("the settings of function \(record.name) in the metadata cannot be read: \(error)")
        }
    }

    func store(name: FunctionName, resolved: ResolvedCode, settings: FunctionSettings) async throws {
        try await metadata.setFunctionSettings(try settings.encoded(), for: name)
        try await metadata.setFunction(FunctionRecord(name: name, manifestID: resolved.manifestID, root: resolved.root,
                                                      tenant: tenant, updatedAt: settings.lastModified))
    }

    /// Lambda's CodeSha256 for the function at `record`: the manifest the API created or last
    /// updated it with, as long as the name still points at that code. A relayout (the same files
    /// laid out again) and a garbage collection's copy forward (the same image in a new root)
    /// move the name and keep its `updatedAt`, which the API set to the settings' `lastModified`;
    /// a name pointed elsewhere since (`thaw push --name`) has a new `updatedAt`, and its current
    /// manifest is reported.
    static func codeSHA256(of record: FunctionRecord, settings: FunctionSettings) -> String {
        func milliseconds(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded(.down)) }
        guard let code = settings.codeSHA256, milliseconds(record.updatedAt) == milliseconds(settings.lastModified) else {
            return record.manifestID
        }
        return code
    }

    /// The configuration Lambda answers with; `manifestID` is its CodeSha256.
    func configuration(name: FunctionName, manifestID: String, settings: FunctionSettings) -> FunctionConfiguration {
        let image = ImageConfigWire(entryPoint: settings.entryPoint, command: settings.command,
                                    workingDirectory: settings.workingDirectory)
        let hasImageConfig = image.entryPoint != nil || image.command != nil || image.workingDirectory != nil
        return FunctionConfiguration(
            functionName: name.value, functionARN: arn(name.value), role: settings.role, description: settings.description,
            codeSize: settings.codeSize, codeSHA256: manifestID, timeout: settings.timeout, memorySize: settings.memorySize,
            lastModified: LambdaTime.format(settings.lastModified),
            environment: settings.environment.isEmpty ? nil : EnvironmentWire(variables: settings.environment),
            revisionID: String(settings.revision),
            imageConfigResponse: hasImageConfig ? .init(imageConfig: image) : nil)
    }

    static func check(_ settings: FunctionSettings) throws(LambdaError) {
        guard FunctionSettings.timeoutRange.contains(settings.timeout) else {
            throw .invalidParameter("1 validation error detected: Value '\(settings.timeout)' at 'timeout' failed to satisfy constraint: Member must have value between 1 and 900")
        }
        guard FunctionSettings.memoryRange.contains(settings.memorySize) else {
            throw .invalidParameter("1 validation error detected: Value '\(settings.memorySize)' at 'memorySize' failed to satisfy constraint: Member must have value between 128 and 10240")
        }
        for key in settings.environment.keys where !Self.isEnvironmentName(key) {
            throw .invalidParameter("Environment variable name '\(key)' must be letters, digits and '_', not starting with a digit")
        }
    }

    static func checkArchitectures(_ architectures: [String]?) throws(LambdaError) {
        guard let architectures else { return }
        guard architectures == ["x86_64"] else {
            throw .invalidParameter("Thaw runs x86_64 functions on this host, not \(architectures.joined(separator: ", "))")
        }
    }

    static func isEnvironmentName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, !("0"..."9").contains(first) else { return false }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }
}
