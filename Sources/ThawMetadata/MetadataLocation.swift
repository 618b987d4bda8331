public import Foundation
public import Logging
import PostgresNIO

/// Where metadata lives: an SQLite file (the embedded default) or a PostgreSQL database.
///
/// Accepted forms: a path or `sqlite:PATH`; `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`
/// (also `postgresql://`), the password otherwise from `PGPASSWORD`. TLS is not used: the
/// server is expected on a trusted network or loopback.
public enum MetadataLocation: Sendable, Equatable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(host: String, port: Int, user: String, password: String?, database: String)

    public init(parsing text: String) throws {
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            guard let url = URLComponents(string: text), let host = url.host, !host.isEmpty, let user = url.user, !user.isEmpty else {
                throw MetadataError(.invalidValue, "metadata location '\(text)' must look like postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE")
            }
            guard url.queryItems?.isEmpty ?? true else {
                throw MetadataError(.invalidValue, "metadata location '\(text)' has parameters Thaw does not use (TLS and other options are not supported): remove '?\(url.query ?? "")'")
            }
            let database = String(url.path.drop { $0 == "/" })
            guard !database.isEmpty, !database.contains("/") else {
                throw MetadataError(.invalidValue, "metadata location '\(text)' names no database (postgres://USER@HOST[:PORT]/DATABASE)")
            }
            let password = url.password ?? ProcessInfo.processInfo.environment["PGPASSWORD"]
            self = .postgres(host: host, port: url.port ?? 5432, user: user, password: password, database: database)
        } else {
            let path = text.hasPrefix("sqlite:") ? String(text.dropFirst("sqlite:".count)) : text
            guard !path.isEmpty, !path.contains("://") else {
                throw MetadataError(.invalidValue, "metadata location '\(text)' is neither a file path (sqlite:PATH) nor postgres://USER@HOST/DATABASE")
            }
            self = .sqlite(path: path)
        }
    }

    public var description: String {
        switch self {
        case .sqlite(let path): "sqlite:\(path)"
        case .postgres(let host, let port, let user, _, let database): "postgres://\(user)@\(host):\(port)/\(database)"
        }
    }

    /// Opens the store and prepares its tables (and the initial root) when missing.
    public func open(now: Date = Date(), logger: Logger = Logger(label: "thaw.metadata")) async throws -> any MetadataStore {
        let store: SQLMetadataStore
        switch self {
        case .sqlite(let path):
            store = SQLMetadataStore(backend: try SQLiteBackend(path: path))
        case .postgres(let host, let port, let user, let password, let database):
            let configuration = PostgresConnection.Configuration(host: host, port: port, username: user, password: password,
                                                                 database: database, tls: .disable)
            store = SQLMetadataStore(backend: PostgresBackend(configuration: configuration, description: description, logger: logger))
        }
        do {
            try await store.prepare(now: now)
        } catch {
            await store.close()
            throw error
        }
        return store
    }
}
