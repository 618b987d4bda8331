import ThawBinary
import Crypto
import Glibc
import SystemPackage

/// The embedded default key provider: one key file per tenant, `DIRECTORY/TENANT.key`, holding
/// 32 random bytes as 64 hex digits. A missing key is created (mode 0600, in a 0700 directory)
/// when a manifest is first sealed for that tenant; opening never creates one. A key file that
/// others can read is refused, as ssh refuses such private keys.
public struct LocalKeyProvider: TenantKeyProvider {
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    public func path(for tenant: Tenant) -> String { directory + "/" + tenant.name + ".key" }

    public func wrap(_ dataKey: [UInt8], tenant: Tenant, context: [UInt8]) async throws -> WrappedKey {
        let key = try loadOrCreate(tenant)
        return try KeyWrapping.wrap(dataKey, with: key, tenant: tenant, context: context)
    }

    public func unwrap(_ wrapped: WrappedKey, tenant: Tenant, context: [UInt8]) async throws -> [UInt8] {
        let path = path(for: tenant)
        guard let key = try load(path) else {
            throw SealError(.key, "no key for tenant '\(tenant)': \(path) does not exist")
        }
        return try KeyWrapping.unwrap(wrapped, with: key, tenant: tenant, context: context, source: path)
    }

    /// The tenant's key, created if missing. Two processes creating it at once agree: the
    /// file is linked into place only if absent, and the loser reads the winner's key.
    func loadOrCreate(_ tenant: Tenant) throws -> [UInt8] {
        let path = path(for: tenant)
        if let key = try load(path) { return key }
        try makeDirectory()
        var key = [UInt8](repeating: 0, count: 32)
        var generator = SystemRandomNumberGenerator()
        for i in key.indices { key[i] = generator.next() }
        // Unique per attempt: sealers in one process and in others may create the key at once.
        // The first link wins; the others read what it linked.
        let temporary = path + ".new-\(getpid())-" + String(generator.next() as UInt64, radix: 36)
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(temporary), .writeOnly, options: [.create, .exclusiveCreate, .closeOnExec],
                                         permissions: [.ownerReadWrite])
        } catch {
            throw SealError(.key, "cannot create key file \(temporary): \(error)")
        }
        do {
            try fd.closeAfter {
                _ = try fd.writeAll(Array((Hex.encode(key) + "\n").utf8))
                guard fsync(fd.rawValue) == 0 else { throw Errno(rawValue: errno) }
            }
        } catch {
            unlink(temporary)
            throw SealError(.key, "cannot write key file \(temporary): \(error)")
        }
        let linked = link(temporary, path) == 0
        let linkError = errno
        unlink(temporary)
        if !linked && linkError != EEXIST {
            throw SealError(.key, "cannot create key file \(path): \(String(cString: strerror(linkError)))")
        }
        guard let stored = try load(path) else { throw SealError(.key, "key file \(path) vanished while being created") }
        return stored
    }

    /// Creates the key directory (0700) and any missing parents (0755).
    private func makeDirectory() throws {
        var current = directory.hasPrefix("/") ? "" : "."
        let components = directory.split(separator: "/")
        for (n, component) in components.enumerated() {
            current += "/" + component
            if mkdir(current, n == components.count - 1 ? 0o700 : 0o755) != 0 && errno != EEXIST {
                throw SealError(.key, "cannot create key directory \(current): \(String(cString: strerror(errno)))")
            }
        }
    }

    /// The key in `path`, or nil when there is no such file.
    func load(_ path: String) throws -> [UInt8]? {
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(FilePath(path), .readOnly, options: [.closeOnExec])
        } catch Errno.noSuchFileOrDirectory {
            return nil
        } catch {
            throw SealError(.key, "cannot open key file \(path): \(error)")
        }
        return try fd.closeAfter {
            var info = stat()
            guard fstat(fd.rawValue, &info) == 0 else { throw SealError(.key, "cannot stat key file \(path)") }
            guard info.st_mode & 0o077 == 0 else {
                throw SealError(.key, "key file \(path) has mode \(String(info.st_mode & 0o777, radix: 8)); others must not read it (chmod 600)")
            }
            var buffer = [UInt8](repeating: 0, count: 256)
            let count = try buffer.withUnsafeMutableBytes { try fd.read(into: $0) }
            let text = String(decoding: buffer[0..<count], as: UTF8.self).trimmingWhitespace()
            guard let key = Hex.decode(text), key.count == 32 else {
                throw SealError(.key, "key file \(path) does not hold a key (64 hexadecimal digits)")
            }
            return key
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
              let last = scalars.lastIndex(where: { !$0.properties.isWhitespace }) else { return "" }
        return String(scalars[first...last])
    }
}
