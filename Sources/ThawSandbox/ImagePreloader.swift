import CLinux
import Foundation
import Glibc

/// Loads a start's `PreloadRun`s into the page caches of the image the sandbox's init just
/// mounted, in their order, on a thread of its own while the init goes on to start the handler
/// (see `ImagePreload` for why).
///
/// Content runs go through the file they belong to, opened by inode number
/// (`thaw_open_ext4_inode`) when the thread first needs it: the init knows inodes, not paths,
/// and opening by handle needs no directory lookups. That needs root, so the init stays root
/// while the handler runs (the handler alone becomes the function's user). Everything else
/// goes through the loop device, whose cache is where ext4 looks for its metadata.
///
/// Each range is asked for with `POSIX_FADV_WILLNEED`, which queues the reads and returns; the
/// handler's read of a page still being loaded waits for it instead of asking again. Loading is
/// best effort: a file that cannot be opened is loaded through the device instead, which costs
/// nothing but a copy, and a failed request ends the loading. The thread ends with the init.
enum ImagePreloader {
    /// Most files held open at once; past it, content goes through the device.
    static let maximumFiles = 4096

    /// Starts loading `runs` into the caches of `mount`, the ext4 mount of `device`.
    ///
    /// - Returns: whether loading started: false when there is nothing to load, or the mount or
    ///   the device does not open.
    static func start(mount: String, device: String, runs: [PreloadRun]) -> Bool {
        guard !runs.isEmpty else { return false }
        let mountDescriptor = open(mount, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        let deviceDescriptor = open(device, O_RDONLY | O_CLOEXEC)
        guard mountDescriptor >= 0, deviceDescriptor >= 0 else {
            if mountDescriptor >= 0 { close(mountDescriptor) }
            if deviceDescriptor >= 0 { close(deviceDescriptor) }
            return false
        }
        let piece = largestRequest(of: device)
        Thread {
            var files = Files(mount: mountDescriptor)
            load(runs, files: &files, device: deviceDescriptor, piece: piece)
            files.closeAll()
            close(mountDescriptor)
            close(deviceDescriptor)
        }.start()
        return true
    }

    /// The regular files content is loaded through, opened by inode on first use.
    struct Files {
        let mount: Int32
        private var open: [UInt32: Int32] = [:]
        private var unusable = Set<UInt32>()

        init(mount: Int32) { self.mount = mount }

        /// A descriptor of `inode` when it is a regular file that opens; nil otherwise (a
        /// directory's blocks, for one, are read through the device by ext4).
        mutating func descriptor(of inode: UInt32) -> Int32? {
            if let descriptor = open[inode] { return descriptor }
            guard !unusable.contains(inode), open.count < ImagePreloader.maximumFiles else { return nil }
            let descriptor = thaw_open_ext4_inode(mount, inode, O_RDONLY | O_CLOEXEC)
            var status = stat()
            guard descriptor >= 0, fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
                if descriptor >= 0 { close(descriptor) }
                unusable.insert(inode)
                return nil
            }
            open[inode] = descriptor
            return descriptor
        }

        func closeAll() {
            for descriptor in open.values { close(descriptor) }
        }
    }

    /// The bytes one `POSIX_FADV_WILLNEED` call reads at most: the kernel clips a longer range
    /// to the device's largest request (`max_sectors_kb`) without saying so. 128 KiB when the
    /// device does not tell.
    static func largestRequest(of device: String) -> Int {
        let name = device.split(separator: "/").last.map(String.init) ?? device
        let text = (try? String(contentsOfFile: "/sys/block/\(name)/queue/max_sectors_kb", encoding: .utf8)) ?? ""
        return max(128, Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) * 1024
    }

    /// Asks for each run's bytes in order, through its file when it is one that opens.
    static func load(_ runs: [PreloadRun], files: inout Files, device: Int32, piece: Int) {
        for run in runs {
            let descriptor: Int32
            let offset: UInt64
            if let inode = run.inode, let logical = run.logical, let file = files.descriptor(of: inode) {
                (descriptor, offset) = (file, UInt64(logical) * 4096)
            } else {
                (descriptor, offset) = (device, run.block * 4096)
            }
            var at = offset
            let end = offset + UInt64(run.count) * 4096
            while at < end {
                let length = min(end - at, UInt64(piece))
                guard posix_fadvise(descriptor, off_t(at), off_t(length), POSIX_FADV_WILLNEED) == 0 else { return }
                at += length
            }
        }
    }
}
