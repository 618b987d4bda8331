import Foundation
import GRDB

/// SQLite through GRDB: one database file, shared safely by several Thaw processes on one
/// machine (SQLite's file locks; a writer waits up to 10 s for another's transaction).
final class SQLiteBackend: SQLBackend {
    let queue: DatabaseQueue
    let path: String

    init(path: String) throws {
        self.path = path
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.label = "thaw.metadata"
        do {
            let directory = (path as NSString).deletingLastPathComponent
            if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
            queue = try DatabaseQueue(path: path, configuration: configuration)
        } catch {
            throw MetadataError(.unavailable, "cannot open the metadata database \(path): \(error)")
        }
    }

    var location: String { path }
    var bigInteger: String { "INTEGER" }
    var preparationLock: SQLStatement? { nil }

    func transaction(_ statements: [SQLStatement]) async throws -> [[[SQLValue]]] {
        do {
            return try await queue.write { db in
                try statements.map { statement in
                    let arguments = StatementArguments(statement.arguments.map { value -> (any DatabaseValueConvertible)? in
                        switch value {
                        case .text(let text): text
                        case .integer(let integer): integer
                        case .null: nil
                        }
                    })
                    guard !statement.columns.isEmpty else {
                        try db.execute(sql: statement.sql, arguments: arguments)
                        return []
                    }
                    return try Row.fetchAll(db, sql: statement.sql, arguments: arguments).map { row in
                        statement.columns.enumerated().map { index, column -> SQLValue in
                            switch column {
                            case .text: (row[index] as String?).map(SQLValue.text) ?? .null
                            case .integer: (row[index] as Int64?).map(SQLValue.integer) ?? .null
                            }
                        }
                    }
                }
            }
        } catch let error as DatabaseError {
            throw MetadataError(.database, "the metadata database \(path) refused a statement: \(error.message ?? "\(error)")")
        }
    }

    func close() async {
        try? queue.close()
    }
}
