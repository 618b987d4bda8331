import ArgumentParser
import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import ThawAgent
import ThawCache

/// The options of commands that talk to a running agent's control endpoint.
struct AgentClientArguments: ParsableArguments {
    @Option(help: "The agent's control endpoint: HOST:PORT, PORT, unix:PATH or an absolute socket path.")
    var agent: String = "127.0.0.1:7480"

    /// Sends one request and returns the body of a 2xx answer.
    func request(_ method: HTTPMethod, _ path: String) async throws -> Data {
        let url: URL
        if let (host, port) = try AddressArgument.parse(agent, option: "--agent") {
            url = URL(string: "http://\(host.contains(":") ? "[\(host)]" : host):\(port)\(path)")!
        } else {
            guard let socketURL = URL(httpURLWithSocketPath: AddressArgument.socketPath(agent), uri: path) else {
                throw ValidationFailure("--agent: '\(agent)' is not a usable socket path")
            }
            url = socketURL
        }
        var request = HTTPClientRequest(url: url.absoluteString)
        request.method = method
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        } catch {
            throw ValidationFailure("cannot reach the agent at \(agent): \(error)")
        }
        let body = Data(try await response.body.collect(upTo: 64 << 20).readableBytesView)
        guard (200..<300).contains(Int(response.status.code)) else {
            let message = (try? JSONDecoder().decode([String: String].self, from: body))?["error"]
                ?? String(decoding: body, as: UTF8.self)
            throw ValidationFailure("the agent answered \(response.status.code): \(message)")
        }
        return body
    }
}

/// `thaw stats`: what a running agent serves and how.
struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a running agent's figures: L1 tiers, and reads, tiers, fetches and prefetch per image.")

    @OptionGroup var client: AgentClientArguments

    @Flag(help: "Print the agent's JSON as it is.")
    var json = false

    func run() async throws {
        let body = try await client.request(.GET, "/v1/stats")
        if json {
            print(String(decoding: body, as: UTF8.self))
            return
        }
        let stats: AgentStatistics
        do {
            stats = try JSONDecoder().decode(AgentStatistics.self, from: body)
        } catch {
            throw ValidationFailure("the agent's statistics do not parse: \(error)")
        }
        print(Self.render(stats), terminator: "")
    }

    static func render(_ stats: AgentStatistics) -> String {
        var out = ""
        func tier(_ name: String, _ t: TierStatistics) {
            out += "L1 \(name): \(mib(UInt64(t.bytes))) of \(mib(UInt64(t.capacity))) in \(t.entries) chunks; "
            out += "\(t.hits) hits, \(t.misses) misses, \(t.insertions) insertions, \(t.evictions) evictions\n"
        }
        tier("memory", stats.memory)
        if let disk = stats.disk { tier("disk", disk) } else { out += "L1 disk: off\n" }
        if stats.corruptFilesDropped > 0 { out += "L1 disk: \(stats.corruptFilesDropped) corrupt files dropped\n" }
        if let l2 = stats.l2 {
            out += "L2: \(l2.nodes.count) nodes, \(l2.dataShards) data + \(l2.parityShards) parity shards; "
            out += "\(l2.hits) hits (\(mib(l2.bytesRead))), \(l2.misses) misses, \(l2.chunksStored) chunks stored\n"
            let p50 = l2.latencyP50Microseconds.map { "\($0) µs" } ?? "–", p99 = l2.latencyP99Microseconds.map { "\($0) µs" } ?? "–"
            out += "L2: lookup p50 \(p50), p99 \(p99); \(l2.shardsMissingOrLate) shards missing or late, \(l2.badChunks) bad chunks, "
            out += "\(l2.shardWriteFailures) shard writes failed, \(l2.writeBacksDropped) write-backs dropped\n"
        } else {
            out += "L2: off\n"
        }
        out += "images served: \(stats.images.count)\n"
        for image in stats.images {
            let r = image.reads
            out += "\(image.id)  \(mib(image.size))\n"
            out += "  reads: \(r.reads) (\(mib(r.bytesRead))); chunk pieces from zero \(r.chunksFromZero), L1 \(r.chunksFromL1 + r.chunksFromMemory), L2 \(r.chunksFromL2), origin \(r.chunksFromOrigin)\n"
            out += "  origin fetches: \(r.originFetches) (read-ahead \(r.readAheadFetches), prefetch \(r.prefetchFetches)); single-flight joins \(r.singleFlightJoins)\n"
            if let planned = image.prefetchChunks {
                out += "  prefetch: \(planned) recorded chunks, \(r.prefetchHits) hits, \(image.prefetchFinished ? "finished" : "running")\n"
            }
            if let recorded = image.recordedChunks {
                out += "  record: \(recorded) chunks, \(image.recording ? "recording" : "saved")\n"
            }
            out += "  errors: \(r.fetchErrors) failed fetches, \(r.deadlineExpiries) deadlines passed\n"
        }
        return out
    }
}

/// `thaw started MANIFEST`: the start being recorded is over.
struct Started: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tell a running agent a start of MANIFEST finished: it saves what the start read, for the next start's prefetch.")

    @Argument(help: "The manifest id the agent serves.")
    var manifest: String

    @OptionGroup var client: AgentClientArguments

    func run() async throws {
        struct Answer: Decodable { var recordedChunks: Int? }
        let body = try await client.request(.POST, "/v1/images/\(manifest)/started")
        let answer = try? JSONDecoder().decode(Answer.self, from: body)
        if let count = answer?.recordedChunks {
            print("saved the access record of \(manifest): \(count) chunks")
        } else {
            print("nothing to save for \(manifest): it was not being recorded, or nothing was read")
        }
    }
}
