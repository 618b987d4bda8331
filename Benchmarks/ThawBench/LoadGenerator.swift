import AsyncHTTPClient
import Foundation
import NIOCore
import Synchronization
import ThawAWS

/// `thaw-bench load`: a load generator for the invoke service (`thaw serve-api`), bounded in
/// requests and in time. Every request is a signed Invoke of one function with an event that
/// carries its own number; every answer must carry that number back, so a request that is lost,
/// answered twice or answered with another request's output shows.
///
/// ```
/// thaw-bench load --endpoint URL --key-id ID --secret SECRET [--region us-east-1]
///                 --function NAME:RATE [--function NAME:RATE …] --seconds S
///                 [--max-requests N] [--closed WORKERS] [--timeout S] [--seed N]
/// ```
///
/// Open loop (the default): each function's invocations arrive as a Poisson process at RATE per
/// second, whether or not earlier ones are answered, as independent clients do; that is what
/// overloads a service. `--closed WORKERS`: that many clients, each sending its next request
/// when its previous one is answered, choosing the function in proportion to RATE: the
/// service's capacity. Prints one JSON object: requests sent, answered (200 without function
/// error), refused (429, with or without Retry-After), failed (any other status, or no answer
/// at all), mismatched (answered with another request's event); goodput
/// (answered per second over the run); latency percentiles of answers and of refusals; and
/// answers by how they started (`X-Thaw-Start`).
enum LoadGenerator {
    struct Options {
        var endpoint = ""
        var keyID = ""
        var secret = ""
        var region = "us-east-1"
        var functions: [(name: String, rate: Double)] = []
        var seconds = 10.0
        var maxRequests = 100_000
        var closedWorkers: Int?
        var timeout = 60.0
        var seed: UInt64 = 1

        init(_ arguments: [String]) throws {
            var index = 0
            func value(_ flag: String) throws -> String {
                index += 1
                guard index < arguments.count else { throw UsageError("\(flag) needs a value") }
                return arguments[index]
            }
            while index < arguments.count {
                let flag = arguments[index]
                switch flag {
                case "--endpoint": endpoint = try value(flag)
                case "--key-id": keyID = try value(flag)
                case "--secret": secret = try value(flag)
                case "--region": region = try value(flag)
                case "--function":
                    let text = try value(flag)
                    let parts = text.split(separator: ":")
                    guard parts.count == 2, let rate = Double(parts[1]), rate > 0 else {
                        throw UsageError("--function takes NAME:RATE with a rate above 0, not \(text)")
                    }
                    functions.append((String(parts[0]), rate))
                case "--seconds": seconds = try Double(value(flag)).orThrow(UsageError("--seconds takes a number"))
                case "--max-requests": maxRequests = try Int(value(flag)).orThrow(UsageError("--max-requests takes a whole number"))
                case "--closed": closedWorkers = try Int(value(flag)).orThrow(UsageError("--closed takes a whole number"))
                case "--timeout": timeout = try Double(value(flag)).orThrow(UsageError("--timeout takes a number"))
                case "--seed": seed = try UInt64(value(flag)).orThrow(UsageError("--seed takes a whole number"))
                default: throw UsageError("unknown option \(flag)")
                }
                index += 1
            }
            guard !endpoint.isEmpty, !keyID.isEmpty, !secret.isEmpty, !functions.isEmpty else {
                throw UsageError("--endpoint, --key-id, --secret and at least one --function are required")
            }
            guard seconds > 0, maxRequests > 0, timeout > 0, (closedWorkers ?? 1) > 0 else {
                throw UsageError("--seconds, --max-requests, --timeout and --closed must be above 0")
            }
        }
    }

    struct UsageError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }

    /// What became of one request.
    enum Result: Sendable {
        case answered(seconds: Double, start: String)
        case refused(seconds: Double, retryAfter: Bool)
        case failed(String)
        case mismatched(String)
    }

    static func run(_ arguments: [String]) async throws {
        let options: Options
        do {
            options = try Options(arguments)
        } catch {
            FileHandle.standardError.write(Data("thaw-bench load: \(error)\n".utf8))
            exit(2)
        }
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 1024
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(Int64(options.timeout)))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        let began = Date()
        let results: [Result]
        if let workers = options.closedWorkers {
            results = await closed(options, workers: workers, client: client)
        } else {
            results = await open(options, client: client)
        }
        let elapsed = Date().timeIntervalSince(began)
        try await client.shutdown()
        print(summary(results, seconds: elapsed))
    }

    /// Poisson arrivals per function for `options.seconds`, at most `maxRequests` in all.
    static func open(_ options: Options, client: HTTPClient) async -> [Result] {
        var generator = SplitMix64(seed: options.seed)
        var arrivals: [(time: Double, function: String)] = []
        for function in options.functions {
            var time = 0.0
            while true {
                time += -log(1 - Double.random(in: 0..<1, using: &generator)) / function.rate
                if time >= options.seconds { break }
                arrivals.append((time, function.name))
            }
        }
        arrivals.sort { $0.time < $1.time }
        arrivals = Array(arrivals.prefix(options.maxRequests))
        let clock = ContinuousClock()
        let start = clock.now
        return await withTaskGroup(of: Result.self) { group in
            for (number, arrival) in arrivals.enumerated() {
                try? await clock.sleep(until: start + .milliseconds(Int64(arrival.time * 1000)))
                group.addTask { await invoke(arrival.function, number: number, options: options, client: client) }
            }
            var results: [Result] = []
            for await result in group { results.append(result) }
            return results
        }
    }

    /// `workers` clients back to back for `options.seconds`, at most `maxRequests` in all.
    static func closed(_ options: Options, workers: Int, client: HTTPClient) async -> [Result] {
        let total = options.functions.reduce(0) { $0 + $1.rate }
        let deadline = ContinuousClock.now + .milliseconds(Int64(options.seconds * 1000))
        let counter = RequestCounter(limit: options.maxRequests)
        return await withTaskGroup(of: [Result].self) { group in
            for worker in 0..<workers {
                group.addTask {
                    var generator = SplitMix64(seed: options.seed &+ UInt64(worker))
                    var results: [Result] = []
                    while ContinuousClock.now < deadline, let number = counter.next() {
                        var pick = Double.random(in: 0..<total, using: &generator)
                        let function = options.functions.first { pick -= $0.rate; return pick < 0 } ?? options.functions[0]
                        results.append(await invoke(function.name, number: number, options: options, client: client))
                    }
                    return results
                }
            }
            var results: [Result] = []
            for await part in group { results += part }
            return results
        }
    }

    static func invoke(_ function: String, number: Int, options: Options, client: HTTPClient) async -> Result {
        let body = Array(#"{"request": \#(number)}"#.utf8)
        guard let url = URL(string: options.endpoint), let host = url.host else { return .failed("bad endpoint \(options.endpoint)") }
        let hostHeader = url.port.map { "\(host):\($0)" } ?? host
        let path = "/2015-03-31/functions/\(function)/invocations"
        let signer = SignatureV4Signer(credentials: AWSCredentials(accessKeyID: options.keyID, secretAccessKey: options.secret),
                                       region: options.region, service: "lambda")
        let signature = signer.sign(SignableRequest(method: "POST", host: hostHeader, path: path, query: "",
                                                    headers: [.init("Host", hostHeader), .init("Content-Type", "application/json")]),
                                    payloadHash: .sha256(of: body), at: Date())
        var request = HTTPClientRequest(url: options.endpoint + path)
        request.method = .POST
        request.headers.replaceOrAdd(name: "Host", value: hostHeader)
        request.headers.add(name: "Content-Type", value: "application/json")
        for header in signature.headers where header.name.lowercased() != "host" {
            request.headers.add(name: header.name, value: header.value)
        }
        request.body = .bytes(ByteBuffer(bytes: body))
        let began = ContinuousClock.now
        do {
            let response = try await client.execute(request, timeout: .seconds(Int64(options.timeout)))
            let answer = try await response.body.collect(upTo: 8 << 20)
            let seconds = (ContinuousClock.now - began).seconds
            let text = String(buffer: answer)
            switch response.status.code {
            case 200 where response.headers.first(name: "X-Amz-Function-Error") == nil:
                // The handler echoes its event: the answer must be this request's.
                guard text.contains(#""request": \#(number)}"#) || text.contains(#""request":\#(number)}"#) else {
                    return .mismatched("request \(number) got \(text.prefix(200))")
                }
                return .answered(seconds: seconds, start: response.headers.first(name: "X-Thaw-Start") ?? "?")
            case 429:
                return .refused(seconds: seconds, retryAfter: response.headers.first(name: "Retry-After") != nil)
            default:
                return .failed("\(response.status.code): \(text.prefix(300))")
            }
        } catch {
            return .failed("no answer: \(error)")
        }
    }

    static func summary(_ results: [Result], seconds: Double) -> String {
        var answered: [Double] = [], refused: [Double] = [], failures: [String] = [], mismatches: [String] = []
        var starts: [String: Int] = [:]
        var refusalsWithoutRetryAfter = 0
        for result in results {
            switch result {
            case .answered(let time, let start):
                answered.append(time)
                starts[start, default: 0] += 1
            case .refused(let time, let retryAfter):
                refused.append(time)
                if !retryAfter { refusalsWithoutRetryAfter += 1 }
            case .failed(let message): failures.append(message)
            case .mismatched(let message): mismatches.append(message)
            }
        }
        func percentile(_ values: [Double], _ fraction: Double) -> Double {
            guard !values.isEmpty else { return 0 }
            let sorted = values.sorted()
            return sorted[min(sorted.count - 1, max(0, Int((fraction * Double(sorted.count)).rounded(.up)) - 1))] * 1000
        }
        let document: [String: Any] = [
            "sent": results.count, "answered": answered.count, "refused": refused.count, "failed": failures.count,
            "mismatched": mismatches.count, "refused_without_retry_after": refusalsWithoutRetryAfter,
            "seconds": seconds, "goodput": Double(answered.count) / seconds,
            "answer_p50_ms": percentile(answered, 0.5), "answer_p99_ms": percentile(answered, 0.99),
            "refusal_p50_ms": percentile(refused, 0.5), "refusal_p99_ms": percentile(refused, 0.99),
            "starts": starts, "first_failures": Array(failures.prefix(5)), "first_mismatches": Array(mismatches.prefix(5)),
        ]
        let data = (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}

/// Hands out request numbers up to a limit, to several workers.
final class RequestCounter: Sendable {
    private let issued = Mutex(0)
    private let limit: Int

    init(limit: Int) { self.limit = limit }

    func next() -> Int? {
        issued.withLock { issued in
            guard issued < limit else { return nil }
            issued += 1
            return issued - 1
        }
    }
}

extension Optional {
    func orThrow(_ error: some Error) throws -> Wrapped {
        guard let self else { throw error }
        return self
    }
}

extension Duration {
    var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
