import CLinux
import Foundation
import Glibc

/// Loads a start's `PreloadRun`s into the page caches of the image the sandbox's init just
/// mounted, in their order, on a thread of its own while the init goes on to start the handler
/// (see `ImagePreload` for why).
///
/// Content runs go through the file they belong to, opened by inode number
/// (`thaw_open_ext4_inode`) when the thread first needs it and closed after its last run: the
/// init knows inodes, not paths, and opening by handle needs no directory lookups. That needs
/// root, so the init stays root while the handler runs (the handler alone becomes the
/// function's user). A directory's blocks, and every run that is not file content, go through
/// the loop device, whose cache is where ext4 reads its metadata from.
///
/// Each range is asked for with `POSIX_FADV_WILLNEED`, which queues the reads and returns; the
/// handler's read of a page still being loaded waits for it instead of asking again. Loading is
/// best effort: the content of a file that does not open (or is neither a regular file nor a
/// directory) is skipped, since ext4 would never look for it in the device's cache, and a
/// failed request ends the loading. The thread ends with the init.
enum ImagePreloader {
    /// Files held open at once at most, below the descriptor limit: the init's own work (its
    /// handler's pipes, the user database) must still find descriptors free.
    static var maximumFiles: Int {
        // sysconf's open-files maximum is the soft RLIMIT_NOFILE.
        let limit = sysconf(CInt(_SC_OPEN_MAX))
        guard limit > 0 else { return 256 }
        return max(0, min(4096, limit - 64))
    }

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
        let limit = maximumFiles
        Thread {
            var files = Files(mount: mountDescriptor, runs: runs, limit: limit)
            load(runs, files: &files, device: deviceDescriptor, piece: piece)
            files.closeAll()
            close(mountDescriptor)
            close(deviceDescriptor)
        }.start()
        return true
    }

    /// How a run's inode is loaded.
    enum Route: Equatable {
        /// Through this descriptor of the regular file.
        case file(Int32)
        /// Through the device, at the run's blocks (a directory).
        case device
        /// Not at all: the inode does not open, or ext4 does not read it through either.
        case skip
    }

    /// The files content is loaded through, opened by inode on first use and closed after the
    /// last run that names them.
    struct Files {
        let mount: Int32
        let limit: Int
        /// The index of the last run naming each inode.
        private let lastUse: [UInt32: Int]
        private var open: [UInt32: Int32] = [:]
        private var known: [UInt32: Route] = [:]

        init(mount: Int32, runs: [PreloadRun], limit: Int) {
            self.mount = mount
            self.limit = limit
            var lastUse: [UInt32: Int] = [:]
            for (index, run) in runs.enumerated() {
                if let inode = run.inode { lastUse[inode] = index }
            }
            self.lastUse = lastUse
        }

        /// How to load a run that names `inode`.
        mutating func route(of inode: UInt32) -> Route {
            if let descriptor = open[inode] { return .file(descriptor) }
            if let route = known[inode] { return route }
            // Past the limit, or out of descriptors: skipped for now, tried again later.
            guard open.count < limit else { return .skip }
            let descriptor = thaw_open_ext4_inode(mount, inode, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY)
            guard descriptor >= 0 else {
                if errno != EMFILE && errno != ENFILE { known[inode] = .skip }
                return .skip
            }
            var status = stat()
            let kind = fstat(descriptor, &status) == 0 ? status.st_mode & S_IFMT : 0
            guard kind == S_IFREG else {
                close(descriptor)
                known[inode] = kind == S_IFDIR ? .device : .skip
                return known[inode]!
            }
            open[inode] = descriptor
            return .file(descriptor)
        }

        /// Closes `inode`'s file if run `index` was the last to name it.
        mutating func done(with inode: UInt32, run index: Int) {
            guard lastUse[inode] == index, let descriptor = open.removeValue(forKey: inode) else { return }
            close(descriptor)
        }

        func closeAll() {
            for descriptor in open.values { close(descriptor) }
        }
    }

    /// The bytes one `POSIX_FADV_WILLNEED` call reads at most: the kernel clips a longer range
    /// to the larger of the device's largest request (`max_sectors_kb`) and its read-ahead
    /// (`read_ahead_kb`) without saying so. 128 KiB when the device does not tell.
    static func largestRequest(of device: String) -> Int {
        func setting(_ file: String) -> Int? {
            let text = try? String(contentsOfFile: LoopDevice.queueSetting(file, of: device), encoding: .utf8)
            return text.flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        let kib = max(setting("max_sectors_kb") ?? 0, setting("read_ahead_kb") ?? 0)
        return (kib >= 4 ? kib : 128) / 4 * 4 * 1024
    }

    /// Asks for each run's bytes in order: file content through its file, directories and
    /// runs that are not content through the device.
    static func load(_ runs: [PreloadRun], files: inout Files, device: Int32, piece: Int) {
        for (index, run) in runs.enumerated() {
            var descriptor = device
            var offset = run.block * 4096
            if let inode = run.inode, let logical = run.logical {
                switch files.route(of: inode) {
                case .file(let file): (descriptor, offset) = (file, UInt64(logical) * 4096)
                case .device: break
                case .skip: continue
                }
            }
            defer { if let inode = run.inode { files.done(with: inode, run: index) } }
            guard PageCacheWarmer.willNeed(descriptor, offset: offset, length: UInt64(run.count) * 4096, piece: piece) == nil else { return }
        }
    }
}
