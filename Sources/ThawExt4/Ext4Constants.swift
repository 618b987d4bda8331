/// Numbers from the ext4 on-disk format (Linux `fs/ext4/ext4.h`, e2fsprogs `ext2_fs.h`).
enum Ext4 {
    static let blockSize = 4096
    static let blocksPerGroup: UInt64 = 32768
    static let inodeSize = 256
    /// Fields beyond the 128-byte base inode: extra_isize, checksum_hi, nanosecond times, crtime,
    /// version_hi, projid.
    static let extraInodeSize = 32
    static let firstInode: UInt32 = 11
    static let rootInode: UInt32 = 2
    static let descriptorSize = 32
    static let maxNameLength = 255
    /// A symlink target shorter than this lives in the inode itself ("fast symlink").
    static let fastSymlinkLimit = 60
    static let maxExtentLength: UInt64 = 32768
    static let extentsPerBlock = (blockSize - 12) / 12

    static let superblockMagic: UInt16 = 0xEF53
    static let extentMagic: UInt16 = 0xF30A
    static let xattrMagic: UInt32 = 0xEA02_0000

    // Features.
    static let compatExtAttr: UInt32 = 0x0008
    static let compatSparseSuper2: UInt32 = 0x0200
    static let incompatFiletype: UInt32 = 0x0002
    static let incompatExtents: UInt32 = 0x0040
    static let incompatFlexBG: UInt32 = 0x0200
    static let roCompatSparseSuper: UInt32 = 0x0001
    static let roCompatLargeFile: UInt32 = 0x0002
    static let roCompatHugeFile: UInt32 = 0x0008
    static let roCompatDirNlink: UInt32 = 0x0020
    static let roCompatExtraIsize: UInt32 = 0x0040

    // Inode flags and modes.
    static let extentsFlag: UInt32 = 0x0008_0000
    static let modeRegular: UInt16 = 0x8000
    static let modeDirectory: UInt16 = 0x4000
    static let modeSymlink: UInt16 = 0xA000
    static let modeCharacter: UInt16 = 0x2000
    static let modeBlock: UInt16 = 0x6000
    static let modeFIFO: UInt16 = 0x1000
    static let modeSocket: UInt16 = 0xC000
}
