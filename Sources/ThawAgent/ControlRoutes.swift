import Foundation
import Hummingbird
import NIOCore

/// The agent's HTTP control endpoint:
///
/// ```
/// GET    /metrics                      Prometheus text format
/// GET    /v1/stats                     AgentStatistics as JSON (what `thaw stats` prints)
/// GET    /v1/images                    the ids served
/// PUT    /v1/images/{manifest}         serve a manifest (id or unique prefix); its prefetch starts
/// POST   /v1/images/{id}/started       the start finished: save what it read, for the next start
/// DELETE /v1/images/{id}               stop serving it to new clients
/// ```
/// Image answers are JSON objects; errors are JSON `{"error": "..."}` with 404 for an image not
/// served or not found and 400 for a malformed request.
enum ControlRoutes {
    struct ImageAnswer: Codable, ResponseEncodable {
        var id: String
        var size: UInt64
        var nbd: String?
        var file: String?
        var prefetchChunks: Int?
        var recording: Bool
    }

    struct StartedAnswer: Codable, ResponseEncodable {
        var id: String
        /// Chunks the saved record lists; nil when nothing was recorded.
        var recordedChunks: Int?
    }

    static func router(for agent: Agent) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("metrics") { _, _ -> Response in
            let text = await agent.scrapeMetrics()
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: ResponseBody(byteBuffer: ByteBuffer(bytes: text)))
        }
        router.get("v1/stats") { _, _ -> Response in
            try json(await agent.statistics())
        }
        router.get("v1/images") { _, _ -> Response in
            try json(await agent.catalog.served.map(\.id))
        }
        router.put("v1/images/:id") { _, context -> Response in
            let reference = try context.parameters.require("id")
            do {
                let served = try await agent.catalog.open(reference)
                return try json(agent.answer(for: served))
            } catch let error as AgentError {
                return try failure(.notFound, error.message)
            }
        }
        router.post("v1/images/:id/started") { _, context -> Response in
            let id = try context.parameters.require("id")
            do {
                let count = try await agent.catalog.finishRecording(id)
                return try json(StartedAnswer(id: id, recordedChunks: count))
            } catch let error as AgentError {
                return try failure(.notFound, error.message)
            } catch {
                return try failure(.internalServerError, "cannot save the access record of \(id): \(error)")
            }
        }
        router.delete("v1/images/:id") { _, context -> Response in
            let id = try context.parameters.require("id")
            do {
                try await agent.catalog.close(id)
                return Response(status: .noContent)
            } catch let error as AgentError {
                return try failure(.notFound, error.message)
            }
        }
        return router
    }

    static func json(_ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = try encoder.encode(value)
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }

    static func failure(_ status: HTTPResponse.Status, _ message: String) throws -> Response {
        var response = try json(["error": message])
        response.status = status
        return response
    }
}
