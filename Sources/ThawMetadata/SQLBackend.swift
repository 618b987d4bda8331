/// A value bound to, or read from, a SQL statement: the only kinds the schema uses.
enum SQLValue: Sendable, Equatable {
    case text(String)
    case integer(Int64)
    case null

    var text: String? { if case .text(let value) = self { value } else { nil } }
    var integer: Int64? { if case .integer(let value) = self { value } else { nil } }
}

/// What a column of a result is, so each backend decodes it without guessing.
enum SQLColumn: Sendable {
    case text, integer
}

/// One statement with its arguments, written with `?` placeholders (SQLite's form; the
/// PostgreSQL backend numbers them).
struct SQLStatement: Sendable {
    var sql: String
    var arguments: [SQLValue]
    var columns: [SQLColumn]

    init(_ sql: String, _ arguments: [SQLValue] = [], columns: [SQLColumn] = []) {
        self.sql = sql
        self.arguments = arguments
        self.columns = columns
    }
}

/// The part of a database a metadata store needs: run statements, alone or as one transaction.
/// Every statement that changes rows says `RETURNING` what it changed, so a caller counts rows
/// the same way in both databases.
protocol SQLBackend: Sendable {
    var location: String { get }
    /// The column type of 64-bit integers (`INTEGER` in SQLite, `BIGINT` in PostgreSQL).
    var bigInteger: String { get }
    /// A statement that makes concurrent preparations of a new database take turns, when the
    /// database needs one (SQLite's writers already do).
    var preparationLock: SQLStatement? { get }
    /// Runs statements in one transaction and returns each one's rows.
    func transaction(_ statements: [SQLStatement]) async throws -> [[[SQLValue]]]
    func close() async
}

extension SQLBackend {
    func rows(_ statement: SQLStatement) async throws -> [[SQLValue]] {
        try await transaction([statement])[0]
    }
}
