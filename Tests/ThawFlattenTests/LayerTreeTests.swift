import Testing
import ThawExt4
@testable import ThawFlatten
import ThawTar

/// Applies `(layer, entry)` pairs and returns the tree.
func merge(_ layers: [[TarEntry]]) throws -> LayerTree {
    var tree = LayerTree()
    for (index, entries) in layers.enumerated() {
        tree.layer = index
        for entry in entries {
            let runs = entry.kind == .regular && entry.size > 0 ? [BlockRun(start: 128, count: 1)] : []
            try tree.apply(entry, components: try ImagePath.components(entry.path), dataRuns: runs)
        }
    }
    return tree
}

func dir(_ path: String, _ permissions: UInt16 = 0o755) -> TarEntry { TarEntry(kind: .directory, path: Array(path.utf8), permissions: permissions) }
func file(_ path: String, size: UInt64 = 1) -> TarEntry { TarEntry(kind: .regular, path: Array(path.utf8), size: size) }
func symlink(_ path: String, _ target: String) -> TarEntry { TarEntry(kind: .symbolicLink, path: Array(path.utf8), linkName: Array(target.utf8)) }
func hardlink(_ path: String, _ target: String) -> TarEntry { TarEntry(kind: .hardLink, path: Array(path.utf8), linkName: Array(target.utf8)) }

/// The paths in a tree, sorted ("a", "a/b", …).
func paths(_ node: FileNode, prefix: String = "") -> [String] {
    node.sortedChildren.flatMap { name, entry -> [String] in
        let path = prefix + String(decoding: name, as: UTF8.self)
        return [path] + (entry.node.kind == .directory ? paths(entry.node, prefix: path + "/") : [])
    }
}

@Suite struct LayerTreeTests {
    @Test func whiteoutsHideLowerLayersOnly() throws {
        let tree = try merge([
            [dir("etc"), file("etc/a"), file("etc/b"), dir("var"), file("var/log")],
            [file("etc/.wh.a"), file("etc/c"), file("etc/.wh.c"), file(".wh.var"), file("etc/.wh.missing")],
        ])
        // etc/c comes from the same layer as its whiteout, so it stays (OCI layer.md).
        #expect(paths(tree.root) == ["etc", "etc/b", "etc/c"])
    }

    @Test func whiteoutsUnderMissingOrNonDirectoryParentsChangeNothing() throws {
        let tree = try merge([
            [file("f")],
            [file("missing/.wh.x"), file("f/.wh.y"), file("gone/.wh..wh..opq")],
        ])
        #expect(paths(tree.root) == ["f"])
    }

    @Test func opaqueDirectoriesHideEverythingBelowFromLowerLayers() throws {
        let tree = try merge([
            [dir("d"), file("d/old"), dir("d/sub"), file("d/sub/deep")],
            [dir("d"), dir("d/sub"), file("d/sub/new"), file("d/.wh..wh..opq"), file("d/top")],
        ])
        #expect(paths(tree.root) == ["d", "d/sub", "d/sub/new", "d/top"])
    }

    @Test func laterEntriesReplaceEarlierOnes() throws {
        let tree = try merge([
            [dir("x"), file("x/inner"), file("y"), dir("z", 0o700)],
            [file("x"), dir("y"), file("y/inside"), dir("z", 0o750)],
        ])
        #expect(paths(tree.root) == ["x", "y", "y/inside", "z"])
        #expect(tree.root.children[Array("z".utf8)]!.node.permissions == 0o750)
    }

    @Test func hardLinksShareANodeUntilOneNameIsReplaced() throws {
        let tree = try merge([
            [file("a"), hardlink("b", "a"), dir("d"), hardlink("d/c", "./a")],
            [file("b", size: 9)],
        ])
        let a = tree.root.children[Array("a".utf8)]!.node
        #expect(tree.root.children[Array("d".utf8)]!.node.children[Array("c".utf8)]!.node === a)
        #expect(tree.root.children[Array("b".utf8)]!.node !== a)
        #expect(throws: FlattenError.self) { try merge([[hardlink("b", "missing")]]) }
        #expect(throws: FlattenError.self) { try merge([[dir("d"), hardlink("b", "d")]]) }
        #expect(throws: FlattenError.self) { try merge([[file("a"), hardlink("b", "../a")]]) }
    }

    @Test func parentsResolveThroughSymlinksInsideTheImage() throws {
        let tree = try merge([
            [dir("usr"), dir("usr/lib"), symlink("lib", "usr/lib"), symlink("abs", "/usr"), symlink("up", "../../../usr")],
            [file("lib/libc.so"), file("abs/lib/libm.so"), file("up/lib/libz.so")],
        ])
        #expect(paths(tree.root).filter { $0.hasPrefix("usr/lib/") } == ["usr/lib/libc.so", "usr/lib/libm.so", "usr/lib/libz.so"])
        #expect(throws: FlattenError.self) { try merge([[symlink("loop", "loop"), file("loop/x")]]) }
        #expect(throws: FlattenError.self) { try merge([[file("f"), file("f/x")]]) }
    }

    @Test func missingParentsAreCreated() throws {
        let tree = try merge([[file("a/b/c")]])
        #expect(paths(tree.root) == ["a", "a/b", "a/b/c"])
        #expect(tree.root.children[Array("a".utf8)]!.node.permissions == 0o755)
    }

    @Test(arguments: ["../x", "a/../../x", "/etc/passwd", "a/\u{0}b"])
    func refusesPathsThatLeaveTheImage(path: String) {
        #expect(throws: FlattenError.self) { try ImagePath.components(Array(path.utf8)) }
    }

    @Test func normalizesHarmlessPathForms() throws {
        #expect(try ImagePath.components(Array("./a//b/./c/".utf8)) == [Array("a".utf8), Array("b".utf8), Array("c".utf8)])
        #expect(try ImagePath.components(Array("./".utf8)) == [])
    }
}
