public import Foundation
public import ThawSeal

/// The metadata store's logic, written once in SQL that SQLite and PostgreSQL both run:
/// `ON CONFLICT` upserts, `RETURNING`, `CASE` rather than either database's own functions.
/// Times are milliseconds since 1970 in 64-bit integers.
public final class SQLMetadataStore: MetadataStore {
    let backend: any SQLBackend

    init(backend: any SQLBackend) { self.backend = backend }

    public var location: String { backend.location }

    static let schemaVersion: Int64 = 1

    public func prepare(now: Date) async throws {
        let big = backend.bigInteger
        // Workers opening a new database at once would race to create the same tables.
        let lock = backend.preparationLock.map { [$0] } ?? []
        _ = try await backend.transaction(lock + [
            SQLStatement("CREATE TABLE IF NOT EXISTS thaw_schema (id \(big) PRIMARY KEY CHECK (id = 1), version \(big) NOT NULL)"),
            SQLStatement("""
                CREATE TABLE IF NOT EXISTS thaw_roots (
                    id TEXT PRIMARY KEY, state TEXT NOT NULL, created_ms \(big) NOT NULL, changed_ms \(big) NOT NULL,
                    last_read_ms \(big), alarm TEXT)
                """),
            SQLStatement("""
                CREATE TABLE IF NOT EXISTS thaw_manifests (
                    id TEXT NOT NULL, root TEXT NOT NULL, tenant TEXT NOT NULL, image_size \(big) NOT NULL,
                    chunk_count \(big) NOT NULL, created_ms \(big) NOT NULL, PRIMARY KEY (id, root))
                """),
            SQLStatement("""
                CREATE TABLE IF NOT EXISTS thaw_functions (
                    name TEXT PRIMARY KEY, manifest TEXT NOT NULL, root TEXT NOT NULL, tenant TEXT NOT NULL,
                    updated_ms \(big) NOT NULL)
                """),
            // At most one active root, whatever concurrent rotations do.
            SQLStatement("CREATE UNIQUE INDEX IF NOT EXISTS thaw_one_active_root ON thaw_roots (state) WHERE state = 'active'"),
            SQLStatement("""
                CREATE TABLE IF NOT EXISTS thaw_uses (
                    manifest TEXT NOT NULL, root TEXT NOT NULL, holder TEXT NOT NULL, expires_ms \(big) NOT NULL,
                    PRIMARY KEY (manifest, root, holder))
                """),
            SQLStatement("CREATE TABLE IF NOT EXISTS thaw_leases (name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires_ms \(big) NOT NULL)"),
            // Added after version 1 without changing it: older Thaw neither reads nor needs it.
            SQLStatement("CREATE TABLE IF NOT EXISTS thaw_function_settings (name TEXT PRIMARY KEY, document TEXT NOT NULL)"),
            SQLStatement("""
                CREATE TABLE IF NOT EXISTS thaw_agents (
                    id TEXT PRIMARY KEY, address TEXT NOT NULL, started_ms \(big) NOT NULL, heartbeat_ms \(big) NOT NULL)
                """),
            SQLStatement("""
                CREATE TABLE IF NOT EXISTS thaw_instances (
                    id TEXT PRIMARY KEY, agent TEXT NOT NULL, function TEXT NOT NULL, state TEXT NOT NULL, since_ms \(big) NOT NULL)
                """),
            SQLStatement("INSERT INTO thaw_schema (id, version) VALUES (1, ?) ON CONFLICT (id) DO NOTHING",
                         [.integer(Self.schemaVersion)]),
            SQLStatement("""
                INSERT INTO thaw_roots (id, state, created_ms, changed_ms) SELECT ?, 'active', ?, ?
                WHERE NOT EXISTS (SELECT 1 FROM thaw_roots)
                """, [.text(RootID.initial.value), .integer(now.milliseconds), .integer(now.milliseconds)]),
        ])
        let version = try await backend.rows(SQLStatement("SELECT version FROM thaw_schema", columns: [.integer]))
        guard version.count == 1, version[0][0].integer == Self.schemaVersion else {
            throw MetadataError(.database, "\(location) holds Thaw metadata of schema version \(version.first?.first?.integer.map(String.init) ?? "?"), not \(Self.schemaVersion)")
        }
    }

    // MARK: Roots

    static let rootColumns = "id, state, created_ms, changed_ms, last_read_ms, alarm"
    static let rootTypes: [SQLColumn] = [.text, .text, .integer, .integer, .integer, .text]

    func root(from row: [SQLValue]) throws -> RootRecord {
        guard let id = row[0].text.flatMap({ try? RootID($0) }), let state = row[1].text.flatMap(RootState.init(rawValue:)),
              let created = row[2].integer, let changed = row[3].integer else {
            throw MetadataError(.database, "\(location) holds a root row Thaw cannot read: \(row)")
        }
        return RootRecord(id: id, state: state, createdAt: Date(milliseconds: created), stateChangedAt: Date(milliseconds: changed),
                          lastReadAt: row[4].integer.map(Date.init(milliseconds:)), alarm: row[5].text)
    }

    public func roots() async throws -> [RootRecord] {
        // Sorted here, not by the database: PostgreSQL's collation and SQLite's byte order differ.
        try await backend.rows(SQLStatement("SELECT \(Self.rootColumns) FROM thaw_roots", columns: Self.rootTypes))
            .map(root(from:)).sorted { ($0.createdAt, $0.id) < ($1.createdAt, $1.id) }
    }

    public func root(_ id: RootID) async throws -> RootRecord? {
        try await backend.rows(SQLStatement("SELECT \(Self.rootColumns) FROM thaw_roots WHERE id = ?", [.text(id.value)], columns: Self.rootTypes))
            .first.map(root(from:))
    }

    public func activeRoot() async throws -> RootRecord {
        let active = try await backend.rows(SQLStatement("SELECT \(Self.rootColumns) FROM thaw_roots WHERE state = 'active'", columns: Self.rootTypes))
        guard active.count == 1 else {
            throw MetadataError(.database, "\(location) has \(active.count) active roots; exactly one must be active")
        }
        return try root(from: active[0])
    }

    /// Two rotations at once cannot leave two active roots: the unique index on active roots
    /// refuses the second insert, and its transaction rolls back.
    public func rotate(to id: RootID, now: Date) async throws {
        if try await root(id) != nil {
            throw MetadataError(.conflict, "root \(id) already exists in \(location); a rotation needs a new root id")
        }
        let ms = SQLValue.integer(now.milliseconds)
        do {
            _ = try await backend.transaction([
                SQLStatement("UPDATE thaw_roots SET state = 'retired', changed_ms = ? WHERE state = 'active' RETURNING id", [ms], columns: [.text]),
                SQLStatement("INSERT INTO thaw_roots (id, state, created_ms, changed_ms) VALUES (?, 'active', ?, ?) RETURNING id",
                             [.text(id.value), ms, ms], columns: [.text]),
            ])
        } catch {
            // Another process rotated to the same id first: the primary key refused the insert.
            if try await root(id) != nil {
                throw MetadataError(.conflict, "root \(id) already exists in \(location); a rotation needs a new root id")
            }
            throw error
        }
    }

    public func transition(_ id: RootID, from: RootState, to: RootState, now: Date) async throws -> Bool {
        try await !backend.rows(SQLStatement("UPDATE thaw_roots SET state = ?, changed_ms = ? WHERE id = ? AND state = ? RETURNING id",
                                             [.text(to.rawValue), .integer(now.milliseconds), .text(id.value), .text(from.rawValue)],
                                             columns: [.text])).isEmpty
    }

    @discardableResult
    public func noteRead(root id: RootID, at time: Date, by reader: String) async throws -> RootRecord? {
        let ms = SQLValue.integer(time.milliseconds)
        let alarm = SQLValue.text("read by \(reader) at \(ISO8601DateFormatter().string(from: time)) while expired")
        return try await backend.rows(SQLStatement("""
            UPDATE thaw_roots SET
                last_read_ms = CASE WHEN last_read_ms IS NULL OR last_read_ms < ? THEN ? ELSE last_read_ms END,
                alarm = CASE WHEN state = 'expired' AND alarm IS NULL THEN ? ELSE alarm END
            WHERE id = ? RETURNING \(Self.rootColumns)
            """, [ms, ms, alarm, .text(id.value)], columns: Self.rootTypes)).first.map(root(from:))
    }

    public func expireUnlessInUse(_ id: RootID, now: Date) async throws -> Bool {
        let ms = SQLValue.integer(now.milliseconds)
        return try await !backend.rows(SQLStatement("""
            UPDATE thaw_roots SET state = 'expired', changed_ms = ?
            WHERE id = ? AND state = 'retired'
                AND NOT EXISTS (SELECT 1 FROM thaw_uses WHERE thaw_uses.root = ? AND thaw_uses.expires_ms > ?)
            RETURNING id
            """, [ms, .text(id.value), .text(id.value), ms], columns: [.text])).isEmpty
    }

    public func clearAlarm(root id: RootID) async throws -> Bool {
        try await !backend.rows(SQLStatement("UPDATE thaw_roots SET alarm = NULL WHERE id = ? AND alarm IS NOT NULL RETURNING id",
                                             [.text(id.value)], columns: [.text])).isEmpty
    }

    // MARK: Manifests

    public func addManifest(_ manifest: ManifestRecord) async throws {
        _ = try await backend.rows(SQLStatement("""
            INSERT INTO thaw_manifests (id, root, tenant, image_size, chunk_count, created_ms) VALUES (?, ?, ?, ?, ?, ?)
            ON CONFLICT (id, root) DO NOTHING RETURNING id
            """, [.text(manifest.id), .text(manifest.root.value), .text(manifest.tenant.name), .integer(Int64(manifest.imageSize)),
                  .integer(Int64(manifest.chunkCount)), .integer(manifest.createdAt.milliseconds)], columns: [.text]))
    }

    public func manifests(in root: RootID?) async throws -> [ManifestRecord] {
        try await manifests(where: root.map { ("root = ?", [.text($0.value)]) })
    }

    public func manifests(withID id: String) async throws -> [ManifestRecord] {
        try await manifests(where: ("id = ?", [.text(id.lowercased())]))
    }

    private func manifests(where condition: (sql: String, arguments: [SQLValue])?) async throws -> [ManifestRecord] {
        let columns = "SELECT id, root, tenant, image_size, chunk_count, created_ms FROM thaw_manifests"
        let types: [SQLColumn] = [.text, .text, .text, .integer, .integer, .integer]
        let statement = condition.map { SQLStatement("\(columns) WHERE \($0.sql)", $0.arguments, columns: types) }
            ?? SQLStatement(columns, columns: types)
        return try await backend.rows(statement).map { row in
            guard let id = row[0].text, let root = row[1].text.flatMap({ try? RootID($0) }), let tenant = row[2].text.flatMap({ try? Tenant($0) }),
                  let size = row[3].integer, let chunks = row[4].integer, let created = row[5].integer else {
                throw MetadataError(.database, "\(location) holds a manifest row Thaw cannot read: \(row)")
            }
            return ManifestRecord(id: id, root: root, tenant: tenant, imageSize: UInt64(size), chunkCount: Int(chunks),
                                  createdAt: Date(milliseconds: created))
        }.sorted { ($0.createdAt, $0.id, $0.root) < ($1.createdAt, $1.id, $1.root) }
    }

    public func removeManifest(id: String, root: RootID) async throws {
        _ = try await backend.rows(SQLStatement("DELETE FROM thaw_manifests WHERE id = ? AND root = ? RETURNING id",
                                                [.text(id), .text(root.value)], columns: [.text]))
    }

    // MARK: Function names

    static let functionColumns = "name, manifest, root, tenant, updated_ms"
    static let functionTypes: [SQLColumn] = [.text, .text, .text, .text, .integer]

    func function(from row: [SQLValue]) throws -> FunctionRecord {
        guard let name = row[0].text.flatMap({ try? FunctionName($0) }), let manifest = row[1].text,
              let root = row[2].text.flatMap({ try? RootID($0) }), let tenant = row[3].text.flatMap({ try? Tenant($0) }),
              let updated = row[4].integer else {
            throw MetadataError(.database, "\(location) holds a function row Thaw cannot read: \(row)")
        }
        return FunctionRecord(name: name, manifestID: manifest, root: root, tenant: tenant, updatedAt: Date(milliseconds: updated))
    }

    public func setFunction(_ function: FunctionRecord) async throws {
        _ = try await backend.rows(SQLStatement("""
            INSERT INTO thaw_functions (name, manifest, root, tenant, updated_ms) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (name) DO UPDATE SET manifest = excluded.manifest, root = excluded.root, tenant = excluded.tenant,
                updated_ms = excluded.updated_ms
            RETURNING name
            """, [.text(function.name.value), .text(function.manifestID), .text(function.root.value), .text(function.tenant.name),
                  .integer(function.updatedAt.milliseconds)], columns: [.text]))
    }

    public func moveFunction(_ function: FunctionRecord, fromManifest manifestID: String, root: RootID) async throws -> Bool {
        try await !backend.rows(SQLStatement("""
            UPDATE thaw_functions SET manifest = ?, root = ?, tenant = ?, updated_ms = ?
            WHERE name = ? AND manifest = ? AND root = ? RETURNING name
            """, [.text(function.manifestID), .text(function.root.value), .text(function.tenant.name), .integer(function.updatedAt.milliseconds),
                  .text(function.name.value), .text(manifestID), .text(root.value)], columns: [.text])).isEmpty
    }

    public func function(named name: FunctionName) async throws -> FunctionRecord? {
        try await backend.rows(SQLStatement("SELECT \(Self.functionColumns) FROM thaw_functions WHERE name = ?", [.text(name.value)],
                                            columns: Self.functionTypes)).first.map(function(from:))
    }

    public func functions() async throws -> [FunctionRecord] {
        try await backend.rows(SQLStatement("SELECT \(Self.functionColumns) FROM thaw_functions", columns: Self.functionTypes))
            .map(function(from:)).sorted { $0.name < $1.name }
    }

    public func removeFunction(named name: FunctionName) async throws -> Bool {
        let removed = try await backend.transaction([
            SQLStatement("DELETE FROM thaw_function_settings WHERE name = ? RETURNING name", [.text(name.value)], columns: [.text]),
            SQLStatement("DELETE FROM thaw_functions WHERE name = ? RETURNING name", [.text(name.value)], columns: [.text]),
        ])
        return !(removed.last ?? []).isEmpty
    }

    public func setFunctionSettings(_ document: String, for name: FunctionName) async throws {
        _ = try await backend.rows(SQLStatement("""
            INSERT INTO thaw_function_settings (name, document) VALUES (?, ?)
            ON CONFLICT (name) DO UPDATE SET document = excluded.document RETURNING name
            """, [.text(name.value), .text(document)], columns: [.text]))
    }

    public func functionSettings(named name: FunctionName) async throws -> String? {
        try await backend.rows(SQLStatement("SELECT document FROM thaw_function_settings WHERE name = ?", [.text(name.value)],
                                            columns: [.text])).first?[0].text
    }

    // MARK: Starts using manifests

    @discardableResult
    public func beginUse(manifest id: String, root: RootID, by holder: String, until: Date) async throws -> RootRecord? {
        _ = try await backend.rows(SQLStatement("""
            INSERT INTO thaw_uses (manifest, root, holder, expires_ms) VALUES (?, ?, ?, ?)
            ON CONFLICT (manifest, root, holder) DO UPDATE SET expires_ms = excluded.expires_ms
            RETURNING manifest
            """, [.text(id), .text(root.value), .text(holder), .integer(until.milliseconds)], columns: [.text]))
        return try await self.root(root)
    }

    public func endUse(manifest id: String, root: RootID, by holder: String) async throws {
        _ = try await backend.rows(SQLStatement("DELETE FROM thaw_uses WHERE manifest = ? AND root = ? AND holder = ? RETURNING manifest",
                                                [.text(id), .text(root.value), .text(holder)], columns: [.text]))
    }

    public func uses(in root: RootID?, now: Date) async throws -> [UseRecord] {
        let columns = "SELECT manifest, root, holder, expires_ms FROM thaw_uses WHERE expires_ms > ?"
        let types: [SQLColumn] = [.text, .text, .text, .integer]
        let ms = SQLValue.integer(now.milliseconds)
        let statement = root.map { SQLStatement("\(columns) AND root = ?", [ms, .text($0.value)], columns: types) }
            ?? SQLStatement(columns, [ms], columns: types)
        return try await backend.rows(statement).map { row in
            guard let manifest = row[0].text, let root = row[1].text.flatMap({ try? RootID($0) }), let holder = row[2].text,
                  let expires = row[3].integer else {
                throw MetadataError(.database, "\(location) holds a use row Thaw cannot read: \(row)")
            }
            return UseRecord(manifestID: manifest, root: root, holder: holder, expiresAt: Date(milliseconds: expires))
        }.sorted { ($0.root, $0.manifestID, $0.holder) < ($1.root, $1.manifestID, $1.holder) }
    }

    // MARK: Agents and instances

    public func heartbeat(_ agent: AgentRecord) async throws -> Bool {
        let renewed = try await backend.rows(SQLStatement(
            "UPDATE thaw_agents SET address = ?, heartbeat_ms = ? WHERE id = ? RETURNING id",
            [.text(agent.address), .integer(agent.heartbeatAt.milliseconds), .text(agent.id)], columns: [.text]))
        if !renewed.isEmpty { return true }
        _ = try await backend.rows(SQLStatement("""
            INSERT INTO thaw_agents (id, address, started_ms, heartbeat_ms) VALUES (?, ?, ?, ?)
            ON CONFLICT (id) DO UPDATE SET address = excluded.address, heartbeat_ms = excluded.heartbeat_ms
            RETURNING id
            """, [.text(agent.id), .text(agent.address), .integer(agent.startedAt.milliseconds), .integer(agent.heartbeatAt.milliseconds)],
            columns: [.text]))
        return false
    }

    public func agents() async throws -> [AgentRecord] {
        try await backend.rows(SQLStatement("SELECT id, address, started_ms, heartbeat_ms FROM thaw_agents",
                                            columns: [.text, .text, .integer, .integer])).map { row in
            guard let id = row[0].text, let address = row[1].text, let started = row[2].integer, let beat = row[3].integer else {
                throw MetadataError(.database, "\(location) holds an agent row Thaw cannot read: \(row)")
            }
            return AgentRecord(id: id, address: address, startedAt: Date(milliseconds: started), heartbeatAt: Date(milliseconds: beat))
        }.sorted { $0.id < $1.id }
    }

    public func removeAgent(id: String) async throws -> Bool {
        let removed = try await backend.transaction([
            SQLStatement("DELETE FROM thaw_instances WHERE agent = ? RETURNING id", [.text(id)], columns: [.text]),
            SQLStatement("DELETE FROM thaw_agents WHERE id = ? RETURNING id", [.text(id)], columns: [.text]),
        ])
        return !(removed.last ?? []).isEmpty
    }

    public func setInstance(_ instance: InstanceRecord) async throws {
        _ = try await backend.rows(SQLStatement("""
            INSERT INTO thaw_instances (id, agent, function, state, since_ms) VALUES (?, ?, ?, ?, ?)
            ON CONFLICT (id) DO UPDATE SET state = excluded.state, since_ms = excluded.since_ms
            RETURNING id
            """, [.text(instance.id), .text(instance.agent), .text(instance.function.value), .text(instance.state),
                  .integer(instance.since.milliseconds)], columns: [.text]))
    }

    public func removeInstance(id: String) async throws {
        _ = try await backend.rows(SQLStatement("DELETE FROM thaw_instances WHERE id = ? RETURNING id", [.text(id)], columns: [.text]))
    }

    public func instances(of function: FunctionName?) async throws -> [InstanceRecord] {
        let statement = function.map {
            SQLStatement("SELECT id, agent, function, state, since_ms FROM thaw_instances WHERE function = ?", [.text($0.value)],
                         columns: [.text, .text, .text, .text, .integer])
        } ?? SQLStatement("SELECT id, agent, function, state, since_ms FROM thaw_instances", columns: [.text, .text, .text, .text, .integer])
        return try await backend.rows(statement).map { row in
            guard let id = row[0].text, let agent = row[1].text, let name = row[2].text.flatMap({ try? FunctionName($0) }),
                  let state = row[3].text, let since = row[4].integer else {
                throw MetadataError(.database, "\(location) holds an instance row Thaw cannot read: \(row)")
            }
            return InstanceRecord(id: id, agent: agent, function: name, state: state, since: Date(milliseconds: since))
        }.sorted { $0.id < $1.id }
    }

    // MARK: Leases

    public func acquireLease(_ name: String, holder: String, now: Date, duration: Duration) async throws -> Bool {
        let expires = now.milliseconds + duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000
        return try await !backend.rows(SQLStatement("""
            INSERT INTO thaw_leases (name, holder, expires_ms) VALUES (?, ?, ?)
            ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
            WHERE thaw_leases.holder = excluded.holder OR thaw_leases.expires_ms <= ?
            RETURNING holder
            """, [.text(name), .text(holder), .integer(expires), .integer(now.milliseconds)], columns: [.text])).isEmpty
    }

    public func releaseLease(_ name: String, holder: String) async throws {
        _ = try await backend.rows(SQLStatement("DELETE FROM thaw_leases WHERE name = ? AND holder = ? RETURNING name",
                                                [.text(name), .text(holder)], columns: [.text]))
    }

    public func close() async { await backend.close() }
}

extension Date {
    /// Whole milliseconds since 1970, as the metadata tables keep times.
    var milliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded(.down)) }

    init(milliseconds: Int64) { self.init(timeIntervalSince1970: Double(milliseconds) / 1000) }
}
