import ThawExt4
import ThawTar

/// The merged filesystem tree of an image, built by applying layers in order with the OCI
/// image spec's rules (`layer.md`): later entries replace earlier ones, `.wh.NAME` deletes NAME
/// from lower layers, `.wh..wh..opq` hides everything lower layers put in its directory.
///
/// Parent directories are resolved through symbolic links inside the image, like an unpacker
/// that writes into a root directory would; missing parents are created.
struct LayerTree {
    static let whiteoutPrefix = Array(".wh.".utf8)
    static let opaqueMarker = Array(".wh..wh..opq".utf8)
    static let reservedWhiteoutPrefix = Array(".wh..wh.".utf8)
    static let maximumSymlinkHops = 40

    let root = FileNode(kind: .directory, permissions: 0o755)
    /// Index of the layer being applied.
    var layer = 0

    /// Applies one tar entry. `dataRuns` is where a regular file's content was written.
    mutating func apply(_ entry: TarEntry, components: [[UInt8]], dataRuns: [BlockRun]) throws {
        guard let name = components.last else {
            guard entry.kind == .directory else { throw FlattenError("the image root must be a directory") }
            Self.setMetadata(root, from: entry)
            return
        }
        if name.starts(with: Self.whiteoutPrefix) {
            // A whiteout under a missing parent, or under something that is not a directory,
            // hides nothing and creates nothing.
            guard let parent = try directory(Array(components.dropLast()), create: false) else { return }
            if name == Self.opaqueMarker {
                Self.hideLower(in: parent, below: layer)
            } else if !name.starts(with: Self.reservedWhiteoutPrefix) {
                let hidden = Array(name.dropFirst(Self.whiteoutPrefix.count))
                if let existing = parent.children[hidden], existing.layer < layer {
                    parent.children[hidden] = nil
                }
            }
            return
        }

        let parent = try directory(Array(components.dropLast()), create: true)!
        let node: FileNode
        switch entry.kind {
        case .directory:
            if let existing = parent.children[name], existing.node.kind == .directory {
                Self.setMetadata(existing.node, from: entry)
                parent.children[name]!.layer = layer
                return
            }
            node = FileNode(kind: .directory, permissions: 0)
        case .hardLink:
            let target = try ImagePath.components(entry.linkName, what: "hard link target")
            guard let found = try lookup(target), found.kind != .directory else {
                throw FlattenError("hard link target '\(String(decoding: entry.linkName, as: UTF8.self))' does not exist or is a directory")
            }
            parent.children[name] = DirectoryEntry(node: found, layer: layer)
            return
        case .regular:
            node = FileNode(kind: .regular, permissions: 0)
            node.size = entry.size
            node.dataRuns = dataRuns
        case .symbolicLink:
            guard !entry.linkName.isEmpty else { throw FlattenError("symbolic link has an empty target") }
            guard entry.linkName.count < 4096 else { throw FlattenError("symbolic link target is longer than 4095 bytes") }
            node = FileNode(kind: .symbolicLink, permissions: 0)
            node.symlinkTarget = entry.linkName
        case .characterDevice, .blockDevice:
            node = FileNode(kind: entry.kind == .characterDevice ? .characterDevice : .blockDevice, permissions: 0)
            guard entry.deviceMajor < 1 << 12, entry.deviceMinor < 1 << 20 else {
                throw FlattenError("device number \(entry.deviceMajor):\(entry.deviceMinor) does not fit Linux's 12-bit major, 20-bit minor")
            }
            node.deviceMajor = entry.deviceMajor
            node.deviceMinor = entry.deviceMinor
        case .fifo:
            node = FileNode(kind: .fifo, permissions: 0)
        }
        Self.setMetadata(node, from: entry)
        // Linux gives every symbolic link mode 0777, whatever the archive says; so does any unpacker.
        if node.kind == .symbolicLink { node.permissions = 0o777 }
        parent.children[name] = DirectoryEntry(node: node, layer: layer)
    }

    private static func setMetadata(_ node: FileNode, from entry: TarEntry) {
        node.permissions = entry.permissions
        node.uid = entry.uid
        node.gid = entry.gid
        node.seconds = entry.modificationTime.seconds
        node.nanoseconds = entry.modificationTime.nanoseconds
        node.extendedAttributes = entry.extendedAttributes
    }

    /// Removes what lower layers wrote below `directory`, keeping this layer's entries
    /// (an opaque directory may be re-declared and filled by its own layer).
    private static func hideLower(in directory: FileNode, below layer: Int) {
        for (name, entry) in directory.children {
            if entry.layer < layer {
                directory.children[name] = nil
            } else if entry.node.kind == .directory {
                hideLower(in: entry.node, below: layer)
            }
        }
    }

    /// The directory at `components`, following symbolic links inside the image and, when
    /// `create` is set, creating what is missing; without `create`, nil when there is none.
    private func directory(_ components: [[UInt8]], create: Bool) throws -> FileNode? {
        var stack = [root]
        var queue = Array(components.reversed())
        var hops = 0
        while let component = queue.popLast() {
            if component == [UInt8(ascii: ".")] { continue }
            if component == [UInt8(ascii: "."), UInt8(ascii: ".")] {
                if stack.count > 1 { stack.removeLast() }
                continue
            }
            let current = stack.last!
            guard let entry = current.children[component] else {
                guard create else { return nil }
                let created = FileNode(kind: .directory, permissions: 0o755)
                current.children[component] = DirectoryEntry(node: created, layer: layer)
                stack.append(created)
                continue
            }
            switch entry.node.kind {
            case .directory:
                stack.append(entry.node)
            case .symbolicLink:
                hops += 1
                guard hops <= Self.maximumSymlinkHops else {
                    throw FlattenError("too many levels of symbolic links in the parent path")
                }
                let target = entry.node.symlinkTarget
                if target.first == UInt8(ascii: "/") { stack = [root] }
                // Resolve inside the image: `..` stops at the root, as in a chroot.
                queue.append(contentsOf: target.split(separator: UInt8(ascii: "/")).map(Array.init).reversed())
            default:
                guard create else { return nil }
                throw FlattenError("parent '\(String(decoding: component, as: UTF8.self))' is not a directory")
            }
        }
        return stack.last!
    }

    /// The node at `components` without creating anything; the last component is not followed.
    private func lookup(_ components: [[UInt8]]) throws -> FileNode? {
        guard let name = components.last else { return root }
        var current = root
        for component in components.dropLast() {
            guard let entry = current.children[component], entry.node.kind == .directory else { return nil }
            current = entry.node
        }
        return current.children[name]?.node
    }
}
