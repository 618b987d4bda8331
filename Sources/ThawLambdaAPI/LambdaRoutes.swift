public import Foundation
public import Hummingbird
import NIOCore
public import ServiceLifecycle
public import ThawAWS

/// The HTTP face of `LambdaService`: the Lambda REST API paths, every request checked with
/// AWS Signature V4 first.
///
/// ```
/// POST   /2015-03-31/functions                          CreateFunction (201)
/// GET    /2015-03-31/functions/                         ListFunctions (?Marker, ?MaxItems)
/// GET    /2015-03-31/functions/{name}                   GetFunction
/// PUT    /2015-03-31/functions/{name}/code              UpdateFunctionCode
/// DELETE /2015-03-31/functions/{name}                   DeleteFunction (204)
/// POST   /2015-03-31/functions/{name}/invocations       Invoke (RequestResponse, Event, DryRun)
/// GET    /metrics                                       Prometheus text, unsigned (when given)
/// ```
public enum LambdaRoutes {
    /// swift-http-types' `HTTPField.Name`, which Hummingbird does not export by that name.
    typealias FieldName = HTTPFields.Element.Name

    /// Lambda's limit on a synchronous invocation's payload, and on a request body here.
    public static let payloadLimit = 6 * 1024 * 1024
    /// Lambda's limit on an asynchronous (`Event`) invocation's payload.
    public static let eventPayloadLimit = 1024 * 1024
    /// How much of the log `X-Amz-Log-Result` carries.
    public static let logTailBytes = 4096

    /// - Parameter metrics: the Prometheus text for `GET /metrics`, which a scraper reads
    ///   without signing; nil serves no such path.
    /// - Parameter cluster: the agents this one shares the API with; an invocation whose
    ///   function's home is another agent is forwarded there. Nil: every invocation runs here.
    public static func router(service: LambdaService, verifier: SignatureV4Verifier, events: EventInvocations,
                              metrics: (@Sendable () async -> [UInt8])? = nil,
                              cluster: AgentCluster? = nil) -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: SignatureCheck(verifier: verifier, unsignedMetrics: metrics != nil))
        if let metrics {
            router.get("metrics") { _, _ -> Response in
                var headers = HTTPFields()
                headers[.contentType] = "text/plain; version=0.0.4"
                return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: await metrics())))
            }
        }
        let base = "2015-03-31/functions"
        router.post(RouterPath(base)) { request, _ -> Response in
            try await answer(status: 201) {
                try await service.createFunction(try decode(CreateFunctionRequest.self, request))
            }
        }
        // The router takes `functions/` (how Lambda's model spells ListFunctions) for this path too.
        router.get(RouterPath(base)) { request, _ -> Response in
            try await answer {
                let query = request.uri.queryParameters
                var maxItems: Int?
                if let text = query["MaxItems"] {
                    guard let value = Int(text) else { throw LambdaError.invalidParameter("MaxItems must be a number, not \(text)") }
                    maxItems = value
                }
                return try await service.listFunctions(marker: query["Marker"].map(String.init), maxItems: maxItems)
            }
        }
        router.get(RouterPath(base + "/:name")) { request, context -> Response in
            try await answer { try await service.getFunction(try name(context)) }
        }
        router.put(RouterPath(base + "/:name/code")) { request, context -> Response in
            try await answer {
                try await service.updateFunctionCode(try name(context), try decode(UpdateFunctionCodeRequest.self, request))
            }
        }
        router.delete(RouterPath(base + "/:name")) { _, context -> Response in
            do {
                try await service.deleteFunction(try name(context))
                return Response(status: .noContent, headers: commonHeaders())
            } catch {
                return errorResponse(error)
            }
        }
        router.post(RouterPath(base + "/:name/invocations")) { request, context -> Response in
            do {
                if let cluster, request.headers[FieldName(AgentCluster.forwardedHeader)!] == nil,
                   let forwarded = try await forwardElsewhere(request, name: try name(context), service: service, cluster: cluster) {
                    return forwarded
                }
                var response = try await invoke(request, name: try name(context), service: service, events: events)
                if let cluster { response.headers[FieldName("X-Thaw-Agent")!] = cluster.id }
                return response
            } catch {
                return errorResponse(error)
            }
        }
        return router
    }

    static func invoke(_ request: Request, name: String, service: LambdaService, events: EventInvocations) async throws -> Response {
        let kind = request.headers[FieldName("X-Amz-Invocation-Type")!] ?? "RequestResponse"
        let logType = request.headers[FieldName("X-Amz-Log-Type")!] ?? "None"
        guard logType == "None" || logType == "Tail" else {
            throw LambdaError.invalidParameter("X-Amz-Log-Type must be None or Tail, not \(logType)")
        }
        if let qualifier = request.uri.queryParameters["Qualifier"], qualifier != "$LATEST" {
            throw LambdaError.invalidParameter("Thaw serves only $LATEST, not qualifier \(qualifier)")
        }
        let payload = try await body(request)
        if !payload.isEmpty, (try? JSONSerialization.jsonObject(with: Data(payload), options: [.fragmentsAllowed])) == nil {
            throw LambdaError.invalidRequestContent("Could not parse request body into json: the payload is not JSON")
        }
        switch kind {
        case "RequestResponse":
            let outcome = try await service.invoke(name, event: payload)
            var headers = commonHeaders()
            headers[FieldName("X-Amz-Executed-Version")!] = "$LATEST"
            headers[FieldName("X-Thaw-Start")!] = outcome.start.rawValue
            if logType == "Tail" {
                headers[FieldName("X-Amz-Log-Result")!] = Data(outcome.log.suffix(logTailBytes)).base64EncodedString()
            }
            var body = outcome.response
            if let failure = outcome.failure {
                headers[FieldName("X-Amz-Function-Error")!] = "Unhandled"
                body = try jsonBytes(["errorMessage": failure, "errorType": outcome.errorType])
            }
            headers[.contentType] = "application/json"
            return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
        case "Event":
            guard payload.count <= eventPayloadLimit else {
                throw LambdaError.tooLarge("Request must be smaller than \(eventPayloadLimit) bytes for the InvokeAsync operation")
            }
            _ = try await service.function(name)
            await events.start { _ = try await service.invoke(name, event: payload) }
            return Response(status: .accepted, headers: commonHeaders())
        case "DryRun":
            _ = try await service.function(name)
            return Response(status: .noContent, headers: commonHeaders())
        default:
            throw LambdaError.invalidParameter("X-Amz-Invocation-Type must be RequestResponse, Event or DryRun, not \(kind)")
        }
    }

    // MARK: Parts

    static func name(_ context: BasicRequestContext) throws -> String {
        let raw = try context.parameters.require("name")
        return raw.removingPercentEncoding ?? raw
    }

    /// Sends an invocation to its function's home agent when that is another agent, trying the
    /// next in the function's order when one cannot be reached; nil when it runs here.
    static func forwardElsewhere(_ request: Request, name: String, service: LambdaService, cluster: AgentCluster) async throws -> Response? {
        let function = try service.name(from: name).value
        let payload = try await body(request)
        var headers = request.headers.map { ($0.name.rawName, $0.value) }
        // The signed Host header, as the client sent it: the home agent checks the same signature.
        if let authority = request.head.authority { headers.append(("Host", authority)) }
        var tried: Set<String> = []
        while let home = cluster.home(of: function, excluding: tried) {
            do {
                let answer = try await cluster.forward(method: request.method.rawValue, path: request.uri.path, query: request.uri.query,
                                                       headers: headers, body: payload, to: home, timeout: .seconds(960))
                var fields = HTTPFields()
                for (field, value) in answer.headers {
                    if let fieldName = FieldName(field) { fields.append(HTTPFields.Element(name: fieldName, value: value)) }
                }
                return Response(status: .init(code: answer.status), headers: fields,
                                body: ResponseBody(byteBuffer: ByteBuffer(bytes: answer.body)))
            } catch AgentCluster.ForwardFailure.notDelivered {
                cluster.suspect(home.id)
                tried.insert(home.id)
            } catch AgentCluster.ForwardFailure.lost(let why) {
                // Not suspected for it: a slow answer is no sign the agent is gone, and its
                // heartbeat says soon enough if it is.
                throw LambdaError(status: 502, type: "ServiceException",
                                  message: "agent \(home.id) at \(home.address), which runs function \(function), went away during the invocation (\(why)); it may or may not have run")
            }
        }
        return nil
    }

    static func body(_ request: Request) async throws -> [UInt8] {
        // The signature check collected it already, within the limit.
        let buffer = try await request.body.collect(upTo: payloadLimit)
        return Array(buffer.readableBytesView)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let bytes = try await body(request)
        do {
            return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
            throw LambdaError(status: 400, type: "SerializationException", message: "cannot read the request: \(error)")
        }
    }

    static func answer(status: HTTPResponse.Status = .ok, _ body: () async throws -> some Encodable) async throws -> Response {
        do {
            var headers = commonHeaders()
            headers[.contentType] = "application/json"
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            return Response(status: status, headers: headers,
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(try await body()))))
        } catch {
            return errorResponse(error)
        }
    }

    static func commonHeaders() -> HTTPFields {
        var headers = HTTPFields()
        headers[FieldName("x-amzn-RequestId")!] = UUID().uuidString.lowercased()
        return headers
    }

    static func jsonBytes(_ object: [String: String]) throws -> [UInt8] {
        Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
    }

    /// An error as Lambda sends it. Anything that is not a `LambdaError` is a ServiceException.
    static func errorResponse(_ error: any Error) -> Response {
        let failure: LambdaError
        switch error {
        case let error as LambdaError: failure = error
        case let error as HTTPError where error.status == .contentTooLarge:
            failure = .tooLarge("Request must be smaller than \(payloadLimit) bytes for the InvokeFunction operation")
        default: failure = .service("\(error)")
        }
        var headers = commonHeaders()
        headers[.contentType] = "application/json"
        headers[FieldName("x-amzn-ErrorType")!] = failure.type
        if let retry = failure.retryAfterSeconds { headers[.retryAfter] = String(retry) }
        let body = (try? jsonBytes(["Type": failure.status >= 500 ? "Service" : "User", "message": failure.message])) ?? []
        return Response(status: HTTPResponse.Status(code: failure.status), headers: headers,
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Checks each request's AWS Signature V4 before any route sees it, over the body it collects
/// (up to the payload limit); a refused request gets the 403 AWS sends.
struct SignatureCheck<Context: RequestContext>: RouterMiddleware {
    let verifier: SignatureV4Verifier
    /// Whether `GET /metrics` passes unsigned.
    let unsignedMetrics: Bool

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if unsignedMetrics, request.method == .get, request.uri.path == "/metrics" { return try await next(request, context) }
        var request = request
        let bytes: [UInt8]
        do {
            bytes = Array(try await request.collectBody(upTo: LambdaRoutes.payloadLimit).readableBytesView)
        } catch {
            return LambdaRoutes.errorResponse(error)
        }
        var headers = request.headers.map { SignableRequest.Header($0.name.rawName, $0.value) }
        if let authority = request.head.authority { headers.append(SignableRequest.Header("host", authority)) }
        do {
            _ = try verifier.verify(method: request.method.rawValue, path: request.uri.path, query: request.uri.query ?? "",
                                    headers: headers, body: bytes, now: Date())
        } catch {
            return LambdaRoutes.errorResponse(LambdaError(status: error.status, type: error.code.rawValue, message: error.message))
        }
        return try await next(request, context)
    }
}

/// `Event` invocations run after their 202 is sent. As a service it waits for the graceful
/// shutdown and then for the invocations in flight: placed after the agent in a service group,
/// it stops first, so they finish while their images are still served.
public actor EventInvocations: Service {
    private var running: [UUID: Task<Void, Never>] = [:]
    private let log: @Sendable (String) -> Void

    public init(log: @escaping @Sendable (String) -> Void) { self.log = log }

    func start(_ body: @escaping @Sendable () async throws -> Void) {
        let id = UUID()
        let log = log
        running[id] = Task {
            do { try await body() } catch { log("an Event invocation failed: \(error)") }
            self.finished(id)
        }
    }

    private func finished(_ id: UUID) { running[id] = nil }

    /// Waits for every invocation started so far.
    public func drain() async {
        while let (_, task) = running.first {
            await task.value
        }
    }

    public var inFlight: Int { running.count }

    public func run() async throws {
        try? await gracefulShutdown()
        await drain()
    }
}
