/// The users and groups an image defines in `/etc/passwd` and `/etc/group`, to resolve an OCI
/// `User` the way container runtimes do. Pure: the init reads the files, this parses them.
public struct UserDatabase: Sendable {
    public struct User: Sendable, Equatable {
        public var name: String
        public var uid: UInt32
        public var gid: UInt32
        public var home: String
    }

    public struct Group: Sendable, Equatable {
        public var name: String
        public var gid: UInt32
        public var members: [String]
    }

    public var users: [User]
    public var groups: [Group]

    /// Parses the two files; lines that are not well formed are skipped, as libc does.
    public init(passwd: String, group: String) {
        users = passwd.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 7, let uid = UInt32(fields[2]), let gid = UInt32(fields[3]) else { return nil }
            return User(name: String(fields[0]), uid: uid, gid: gid, home: String(fields[5]))
        }
        groups = group.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ":", omittingEmptySubsequences: false)
            guard fields.count >= 4, let gid = UInt32(fields[2]) else { return nil }
            return Group(name: String(fields[0]), gid: gid,
                         members: fields[3].split(separator: ",").map(String.init))
        }
    }

    /// Who a process with `user` (an OCI `User` string) runs as.
    public struct Identity: Sendable, Equatable {
        public var uid: UInt32
        public var gid: UInt32
        public var supplementaryGroups: [UInt32]
        /// From the passwd entry; "/" for a numeric user the image does not list.
        public var home: String
    }

    /// Resolves `user`: empty is root; a name must be in passwd; a number need not be; a group
    /// part, by name or number, replaces the user's primary group.
    ///
    /// - Throws: `SandboxError(.invalidFunction)` naming the user or group that does not exist.
    public func resolve(_ user: String) throws -> Identity {
        let parts = user.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let userPart = parts.first ?? ""
        let entry: User?
        var uid: UInt32
        var gid: UInt32
        if userPart.isEmpty {
            entry = users.first { $0.uid == 0 }
            uid = 0
            gid = entry?.gid ?? 0
        } else if let number = UInt32(userPart) {
            entry = users.first { $0.uid == number }
            uid = number
            gid = entry?.gid ?? 0
        } else {
            guard let found = users.first(where: { $0.name == userPart }) else {
                throw SandboxError(.invalidFunction, "user '\(userPart)' is not in the image's /etc/passwd")
            }
            entry = found
            uid = found.uid
            gid = found.gid
        }
        var supplementary: [UInt32] = []
        if parts.count == 2 {
            let groupPart = parts[1]
            if let number = UInt32(groupPart) {
                gid = number
            } else if let group = groups.first(where: { $0.name == groupPart }) {
                gid = group.gid
            } else {
                throw SandboxError(.invalidFunction, "group '\(groupPart)' is not in the image's /etc/group")
            }
        } else if let name = entry?.name {
            supplementary = groups.filter { $0.members.contains(name) }.map(\.gid)
        }
        if !supplementary.contains(gid) { supplementary.insert(gid, at: 0) }
        return Identity(uid: uid, gid: gid, supplementaryGroups: supplementary, home: entry?.home ?? "/")
    }
}
