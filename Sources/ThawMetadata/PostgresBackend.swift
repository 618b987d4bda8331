import Logging
import NIOCore
import NIOPosix
import PostgresNIO
import Synchronization

/// PostgreSQL through postgres-nio, for several workers sharing one origin. Connections are
/// opened on demand and kept for reuse; a transaction has a connection to itself, so
/// statements of concurrent callers never interleave with it.
final class PostgresBackend: SQLBackend {
    let configuration: PostgresConnection.Configuration
    let description: String
    let logger: Logger
    /// Connections not in use; nil once the backend is closed, when connections coming back
    /// are closed instead (postgres-nio requires every connection to be closed).
    private let idle = Mutex<[PostgresConnection]?>([])
    private let nextID = Mutex(0)

    init(configuration: PostgresConnection.Configuration, description: String, logger: Logger) {
        self.configuration = configuration
        self.description = description
        self.logger = logger
    }

    var location: String { description }
    var bigInteger: String { "BIGINT" }
    /// A transaction-scoped advisory lock under a fixed key ("thaw" in ASCII).
    var preparationLock: SQLStatement? { SQLStatement("SELECT pg_advisory_xact_lock(1953005943)", columns: []) }

    func transaction(_ statements: [SQLStatement]) async throws -> [[[SQLValue]]] {
        let connection = try await checkOut()
        do {
            if statements.count > 1 { try await connection.query("BEGIN", logger: logger) }
            var results: [[[SQLValue]]] = []
            for statement in statements { results.append(try await run(statement, on: connection)) }
            if statements.count > 1 { try await connection.query("COMMIT", logger: logger) }
            checkIn(connection)
            return results
        } catch {
            // The transaction may be half done: roll it back, and drop a connection that cannot.
            do {
                if statements.count > 1 { try await connection.query("ROLLBACK", logger: logger) }
                checkIn(connection)
            } catch {
                try? await connection.close()
            }
            if let error = error as? PSQLError {
                throw MetadataError(.database, "PostgreSQL at \(description) refused a statement: \(error.serverInfo?[.message] ?? String(reflecting: error))")
            }
            throw error
        }
    }

    /// Rewrites `?` placeholders as `$1`, `$2`, … (the statements never hold a literal `?`).
    static func numbered(_ sql: String) -> String {
        var out = ""
        var count = 0
        for character in sql {
            if character == "?" {
                count += 1
                out += "$\(count)"
            } else {
                out.append(character)
            }
        }
        return out
    }

    func run(_ statement: SQLStatement, on connection: PostgresConnection) async throws -> [[SQLValue]] {
        var binds = PostgresBindings()
        for argument in statement.arguments {
            switch argument {
            case .text(let text): binds.append(text)
            case .integer(let integer): binds.append(integer)
            case .null: binds.appendNull()
            }
        }
        let rows = try await connection.query(PostgresQuery(unsafeSQL: Self.numbered(statement.sql), binds: binds), logger: logger)
        var result: [[SQLValue]] = []
        for try await row in rows {
            let cells = Array(row)
            var values: [SQLValue] = []
            for (index, column) in statement.columns.enumerated() where index < cells.count {
                switch column {
                case .text: values.append(try cells[index].decode(String?.self).map(SQLValue.text) ?? .null)
                case .integer: values.append(try cells[index].decode(Int64?.self).map(SQLValue.integer) ?? .null)
                }
            }
            result.append(values)
        }
        return result
    }

    func checkOut() async throws -> PostgresConnection {
        let reused = try idle.withLock { idle -> PostgresConnection? in
            guard idle != nil else { throw MetadataError(.unavailable, "the connection to PostgreSQL at \(description) is closed") }
            return idle!.popLast()
        }
        if let reused, !reused.isClosed { return reused }
        let id = nextID.withLock { next in
            next += 1
            return next
        }
        do {
            return try await PostgresConnection.connect(configuration: configuration, id: id, logger: logger)
        } catch {
            throw MetadataError(.unavailable, "cannot connect to PostgreSQL at \(description): \(String(reflecting: error))")
        }
    }

    func checkIn(_ connection: PostgresConnection) {
        let kept = idle.withLock { idle -> Bool in
            guard idle != nil else { return false }
            idle!.append(connection)
            return true
        }
        if !kept { connection.close().whenComplete { _ in } }
    }

    func close() async {
        let connections = idle.withLock { idle in
            defer { idle = nil }
            return idle ?? []
        }
        for connection in connections { try? await connection.close() }
    }
}
