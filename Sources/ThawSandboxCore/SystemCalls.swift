import Glibc

/// The few Linux calls the sandbox's init makes, with errors that name what was attempted.
/// Hand-written: swift-system covers file descriptors, not mounts, namespaces or ioctls.
package enum SystemCalls {
    /// mount(2) flags (linux/mount.h).
    package struct MountFlags: OptionSet {
        package let rawValue: UInt
        package init(rawValue: UInt) { self.rawValue = rawValue }
        package static let readOnly = MountFlags(rawValue: 1)
        package static let noSetUID = MountFlags(rawValue: 2)
        package static let noDevices = MountFlags(rawValue: 4)
        package static let noExec = MountFlags(rawValue: 8)
    }

    package static func errorText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

    package static func mount(_ source: String, on target: String, type: String, flags: MountFlags = [], data: String = "") throws {
        guard Glibc.mount(source, target, type, flags.rawValue, data) == 0 else {
            throw SandboxError(.setupFailed, "cannot mount \(type) \(source) on \(target)\(data.isEmpty ? "" : " (\(data))"): \(errorText())")
        }
    }

    /// Creates `path` and its missing parents with `mode`; an existing directory is fine.
    package static func makeDirectories(_ path: String, mode: UInt32 = 0o755) throws {
        var prefix = ""
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if Glibc.mkdir(prefix, mode) != 0 && errno != EEXIST {
                throw SandboxError(.setupFailed, "cannot create directory \(prefix): \(errorText())")
            }
        }
    }

    package static func makeDevice(_ path: String, major: UInt32, minor: UInt32, mode: UInt32 = 0o666) throws {
        let device = (dev_t(major & 0xfff) << 8) | dev_t(minor & 0xff) | (dev_t(minor & ~0xff) << 12)
        guard mknod(path, S_IFCHR | mode, device) == 0 else {
            throw SandboxError(.setupFailed, "cannot create device \(path): \(errorText())")
        }
        // The umask of the init trims the mode given to mknod.
        chmod(path, mode)
    }

    package static func symlink(_ target: String, at path: String) throws {
        guard Glibc.symlink(target, path) == 0 || errno == EEXIST else {
            throw SandboxError(.setupFailed, "cannot create symbolic link \(path): \(errorText())")
        }
    }

    package static func readFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = fread(&buffer, 1, buffer.count, file)
            if count <= 0 { break }
            bytes += buffer[0..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Brings the loopback interface up, so a handler without a network can still use 127.0.0.1.
    package static func loopbackUp() throws {
        let sock = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard sock >= 0 else { throw SandboxError(.setupFailed, "cannot open a socket to configure loopback: \(errorText())") }
        defer { close(sock) }
        // struct ifreq: a 16-byte name, then a union whose first member here is the short flags.
        var request = [UInt8](repeating: 0, count: 40)
        for (i, byte) in "lo".utf8.enumerated() { request[i] = byte }
        let getFlags: UInt = 0x8913, setFlags: UInt = 0x8914  // SIOCGIFFLAGS, SIOCSIFFLAGS
        try request.withUnsafeMutableBytes { raw in
            guard ioctl(sock, getFlags, raw.baseAddress!) == 0 else {
                throw SandboxError(.setupFailed, "cannot read the loopback interface's flags: \(errorText())")
            }
            let flags = raw.load(fromByteOffset: 16, as: UInt16.self) | 0x1  // IFF_UP
            raw.storeBytes(of: flags, toByteOffset: 16, as: UInt16.self)
            guard ioctl(sock, setFlags, raw.baseAddress!) == 0 else {
                throw SandboxError(.setupFailed, "cannot bring the loopback interface up: \(errorText())")
            }
        }
    }
}
