import Testing
import ThawFUSE

@Suite("FUSE file system catalog")
struct FUSEFileSystemTests {
    @Test("names must be one path component", arguments: ["", ".", "..", "a/b", "/", String(repeating: "x", count: 256)])
    func refusesInvalidNames(_ name: String) throws {
        let fileSystem = FUSEFileSystem()
        let error = #expect(throws: FUSEError.self) { try fileSystem.add(name, MemoryFile([1])) }
        #expect(error?.kind == .invalidName)
        #expect(error?.path == name)
        #expect(fileSystem.names.isEmpty)
    }

    @Test("names cannot contain NUL")
    func refusesNUL() throws {
        let name = "nul\u{0}name"
        let error = #expect(throws: FUSEError.self) { try FUSEFileSystem().add(name, MemoryFile([1])) }
        #expect(error?.kind == .invalidName)
        #expect(error?.path == name)
    }

    @Test("names are listed sorted, replaced in place and removed")
    func listsNames() throws {
        let fileSystem = FUSEFileSystem()
        try fileSystem.add("b.ext4", MemoryFile([1]))
        try fileSystem.add("a.ext4", MemoryFile([2]))
        try fileSystem.add(String(repeating: "x", count: 255), MemoryFile([3]))
        try fileSystem.add("a.ext4", MemoryFile([4, 5]))
        #expect(fileSystem.names == ["a.ext4", "b.ext4", String(repeating: "x", count: 255)])
        fileSystem.remove("b.ext4")
        fileSystem.remove("never-added")
        #expect(fileSystem.names == ["a.ext4", String(repeating: "x", count: 255)])
    }
}
