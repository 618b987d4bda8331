public import NIOCore

/// The memcached text protocol, as much of it as a chunk cache needs: multi-key `get`, `set`,
/// `delete`, `stats settings` and `version`. Pure: requests to bytes, bytes to responses.
///
/// Hand-written: no memcached client for swift-nio is among the packages Thaw may use. The
/// protocol is memcached's protocol.txt; replies come back in request order, which is what
/// lets one connection carry many requests at once (pipelining).
public enum MemcachedRequest: Sendable, Equatable {
    case get([String])
    case set(key: String, value: [UInt8], expiry: UInt32)
    case delete(String)
    case statsSettings
    case version

    /// What kind of reply it gets: the parser needs it, since `END` closes both a `get` and `stats`.
    var expects: MemcachedParser.Expectation {
        switch self {
        case .get: .values
        case .statsSettings: .stats
        case .set, .delete, .version: .line
        }
    }

    public func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .get(let keys):
            buffer.writeString("get " + keys.joined(separator: " ") + "\r\n")
        case .set(let key, let value, let expiry):
            buffer.writeString("set \(key) 0 \(expiry) \(value.count)\r\n")
            buffer.writeBytes(value)
            buffer.writeString("\r\n")
        case .delete(let key):
            buffer.writeString("delete \(key)\r\n")
        case .statsSettings:
            buffer.writeString("stats settings\r\n")
        case .version:
            buffer.writeString("version\r\n")
        }
    }

    /// Memcached's key rule: 1–250 bytes, no control characters or spaces.
    public static func isValidKey(_ key: String) -> Bool {
        let bytes = key.utf8
        return !bytes.isEmpty && bytes.count <= 250 && bytes.allSatisfy { $0 > 0x20 && $0 != 0x7f }
    }
}

public enum MemcachedResponse: Sendable, Equatable {
    /// A `get`'s hits, by key; a miss is simply absent.
    case values([String: [UInt8]])
    /// STORED, NOT_STORED, EXISTS, NOT_FOUND, DELETED, VERSION x: the reply line.
    case line(String)
    case stats([String: String])
}

/// A reply the server sent that says the request failed, or bytes that are not memcached.
public struct MemcachedError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        /// ERROR, CLIENT_ERROR or SERVER_ERROR from the server.
        case server
        /// Bytes that do not parse as a reply.
        case malformed
        /// No reply within the timeout; the connection is closed.
        case timeout
        /// The connection could not be made or was lost.
        case connection
        /// A value over the node's item size limit, or a key memcached would refuse.
        case invalidRequest
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

public enum MemcachedParser {
    public enum Expectation: Sendable {
        case values, stats, line
    }

    /// Parses one whole reply from the front of `buffer`, consuming it; nil (consuming nothing)
    /// when the reply is not complete yet.
    ///
    /// - Throws: `MemcachedError(.server)` for an error reply (consumed), `.malformed` for bytes
    ///   that cannot be a reply.
    public static func parse(_ buffer: inout ByteBuffer, expecting: Expectation) throws -> MemcachedResponse? {
        var view = buffer
        guard let first = try readLine(&view) else { return nil }
        if first == "ERROR" || first.hasPrefix("CLIENT_ERROR") || first.hasPrefix("SERVER_ERROR") {
            buffer = view
            throw MemcachedError(.server, "memcached replied \(first)")
        }
        switch expecting {
        case .line:
            buffer = view
            return .line(first)
        case .stats:
            var stats: [String: String] = [:]
            var line = first
            while line != "END" {
                let parts = line.split(separator: " ", maxSplits: 2)
                guard parts.count == 3, parts[0] == "STAT" else {
                    throw MemcachedError(.malformed, "expected STAT or END, got '\(line.prefix(80))'")
                }
                stats[String(parts[1])] = String(parts[2])
                guard let next = try readLine(&view) else { return nil }
                line = next
            }
            buffer = view
            return .stats(stats)
        case .values:
            var values: [String: [UInt8]] = [:]
            var line = first
            while line != "END" {
                let parts = line.split(separator: " ")
                guard parts.count >= 4, parts[0] == "VALUE", let length = Int(parts[3]), length >= 0 else {
                    throw MemcachedError(.malformed, "expected VALUE or END, got '\(line.prefix(80))'")
                }
                guard view.readableBytes >= length + 2 else { return nil }
                let value = view.readBytes(length: length)!
                guard view.readBytes(length: 2) == [0x0d, 0x0a] else {
                    throw MemcachedError(.malformed, "a value of \(length) bytes for \(parts[1]) is not followed by CRLF")
                }
                values[String(parts[1])] = value
                guard let next = try readLine(&view) else { return nil }
                line = next
            }
            buffer = view
            return .values(values)
        }
    }

    /// One CRLF-terminated line, without the CRLF; nil if none is complete.
    static func readLine(_ buffer: inout ByteBuffer) throws -> String? {
        let view = buffer.readableBytesView
        guard let newline = view.firstIndex(of: 0x0a) else {
            if view.count > 4096 { throw MemcachedError(.malformed, "a reply line longer than 4096 bytes") }
            return nil
        }
        let length = newline - view.startIndex
        guard length >= 1, view[newline - 1] == 0x0d else {
            throw MemcachedError(.malformed, "a reply line not ended by CRLF")
        }
        let line = buffer.readString(length: length - 1)!
        buffer.moveReaderIndex(forwardBy: 2)
        return line
    }
}
