import Glibc
import ThawSandboxCore

/// The microVM's init, after the initramfs's `/init` has mounted proc, sysfs and devtmpfs and
/// loaded the virtio and overlay modules: finds its three disks, mounts the image read-only
/// under a tmpfs overlay, runs the handler with the event, writes the response to the response
/// disk and restarts the VM, which qemu (`-no-reboot`) turns into an exit.
///
/// Progress goes to the console as `thaw-guest: STEP` lines, which the host timestamps.
/// A static executable with no Foundation: the initramfs has no libraries.
///
/// A snapshot boot (`GuestProtocol`) differs after the mounts: the handler gets a pipe on its
/// standard input, the guest says `ready` once the handler has loaded and waits, and the host
/// snapshots the VM while the guest polls the request disk. A VM restored from that snapshot
/// goes on polling, finds the event the host wrote there, and feeds it through the pipe.

func say(_ line: String) {
    let text = Array(("thaw-guest: " + line + "\n").utf8)
    _ = write(1, text, text.count)
}

/// Up to `limit` bytes of `path`, read 1 MiB at a time: a guest of Lambda's smallest memory
/// size cannot afford a buffer as large as the limit.
func readAll(_ path: String, limit: Int) -> [UInt8]? {
    let descriptor = open(path, O_RDONLY)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var piece = [UInt8](repeating: 0, count: min(limit, 1 << 20))
    while bytes.count < limit {
        let wanted = min(piece.count, limit - bytes.count)
        let count = piece.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, wanted) }
        if count <= 0 { break }
        bytes += piece[0..<count]
    }
    return bytes
}

/// The disks by what is on them (virtio-mmio probing order is not the command line's), waiting
/// up to five seconds for the driver to bring them up. Whatever is missing stays nil.
func findDisks() -> (root: String?, request: String?, response: String?) {
    var root: String?, request: String?, response: String?
    for _ in 0..<500 {
        for letter in "abcdefgh" {
            let path = "/dev/vd\(letter)"
            guard path != root, path != request, path != response, let head = readAll(path, limit: 2048) else { continue }
            if head.starts(with: GuestProtocol.requestMagic) {
                request = path
            } else if head.starts(with: GuestProtocol.emptyResponseMagic) {
                response = path
            } else if head.count >= 1082 && head[1080] == 0x53 && head[1081] == 0xef {
                root = path
            }
        }
        if root != nil, request != nil, response != nil { break }
        usleep(10_000)
    }
    return (root, request, response)
}

func writeAll(_ descriptor: Int32, _ bytes: [UInt8], at offset: Int) {
    var done = 0
    while done < bytes.count {
        let count = bytes[done...].withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, off_t(offset + done)) }
        if count <= 0 { return }
        done += count
    }
}

/// Restarts the VM at once, which qemu (`-no-reboot`) turns into its exit. Through sysrq: glibc's
/// reboot(2) wrapper is not visible to Swift, and if sysrq failed, init's exit panics the
/// kernel, which `panic=-1` also turns into a restart.
func powerOff() -> Never {
    sync()
    let trigger = open("/proc/sysrq-trigger", O_WRONLY)
    if trigger >= 0 { _ = write(trigger, "b", 1) }
    exit(0)
}

func answer(_ response: GuestProtocol.Response, on disk: Int32) {
    guard disk >= 0 else { return }
    writeAll(disk, response.encodedHeader(), at: 0)
    fsync(disk)
}

/// Runs the handler and returns what to write in the response disk's header.
func serve(responseDisk: inout Int32) throws -> GuestProtocol.Response {
    let found = findDisks()
    if let response = found.response { responseDisk = open(response, O_RDWR) }
    guard let root = found.root, let requestDisk = found.request, responseDisk >= 0 else {
        throw SandboxError(.setupFailed, "the guest did not find its disks: root \(found.root ?? "missing"), request \(found.request ?? "missing"), response \(found.response ?? "missing")")
    }
    say("devices")
    guard let requestBytes = readAll(requestDisk, limit: 64 << 20) else {
        throw SandboxError(.setupFailed, "cannot read the request disk \(requestDisk)")
    }
    let request = try GuestProtocol.Request(decoding: requestBytes)

    for directory in ["/lower", "/rw", "/newroot", "/run"] { try SystemCalls.makeDirectories(directory) }
    try SystemCalls.mount(root, on: "/lower", type: "ext4", flags: [.readOnly, .noDevices])
    try SystemCalls.mount("thaw-rw", on: "/rw", type: "tmpfs", flags: [.noDevices], data: "size=\(request.tmpSize),mode=0755")
    try SystemCalls.makeDirectories("/rw/upper")
    try SystemCalls.makeDirectories("/rw/work")
    try SystemCalls.mount("overlay", on: "/newroot", type: "overlay", flags: [.noDevices],
                          data: "lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work")
    try SystemCalls.makeDirectories("/newroot/proc")
    try SystemCalls.mount("proc", on: "/newroot/proc", type: "proc", flags: [.noSetUID, .noDevices, .noExec])
    try SystemCalls.makeDirectories("/newroot/dev")
    try SystemCalls.mount("devtmpfs", on: "/newroot/dev", type: "devtmpfs", flags: [.noSetUID, .noExec])
    try SystemCalls.makeDirectories("/newroot/tmp")
    chmod("/newroot/tmp", 0o1777)
    _ = sethostname("thaw", 4)
    try? SystemCalls.loopbackUp()
    // The response waits in a tmpfs just over the limit, so a flood stops there.
    try SystemCalls.mount("thaw-run", on: "/run", type: "tmpfs", flags: [.noDevices, .noExec],
                          data: "size=\(request.responseLimit + 65536),mode=0700")
    // The event: a file, or for a snapshot boot a pipe the event goes into after the restore.
    var eventPipe: [Int32] = [-1, -1]
    let eventFile: Int32
    if request.snapshot {
        guard pipe(&eventPipe) == 0 else { throw SandboxError(.setupFailed, "cannot create the event pipe: \(SystemCalls.errorText())") }
        // The handler must not hold the write end, or its input would never end.
        _ = fcntl(eventPipe[1], F_SETFD, FD_CLOEXEC)
        eventFile = eventPipe[0]
    } else {
        eventFile = open("/run/event", O_RDWR | O_CREAT | O_TRUNC, 0o600)
        writeAll(eventFile, request.event, at: 0)
        lseek(eventFile, 0, SEEK_SET)
    }
    let responseFile = open("/run/response", O_RDWR | O_CREAT | O_TRUNC, 0o600)
    guard eventFile >= 0, responseFile >= 0 else {
        throw SandboxError(.setupFailed, "cannot create the event and response files: \(SystemCalls.errorText())")
    }
    say("root-mounted")

    guard chroot("/newroot") == 0, chdir("/") == 0 else {
        throw SandboxError(.setupFailed, "cannot change root to the image: \(SystemCalls.errorText())")
    }
    let handler = try HandlerLauncher.start(request.launch, descriptors: [0: eventFile, 1: responseFile, 2: 2],
                                           keepPrivileges: true)
    say("handler-started")
    if request.snapshot {
        close(eventPipe[0])
        // A handler that ends before it is ready gets no event; its end is the answer.
        if waitUntilQuiet(handler: handler) {
            say("ready")
            let event = waitForEvent(requestDisk)
            say("event-received")
            signal(SIGPIPE, SIG_IGN)
            var done = 0
            while done < event.count {
                let count = event[done...].withUnsafeBytes { write(eventPipe[1], $0.baseAddress, $0.count) }
                if count <= 0 { break }  // the handler closed its input: the rest is not wanted
                done += count
            }
        }
        close(eventPipe[1])
    }
    let termination = HandlerLauncher.reap(until: handler)
    say("handler-finished")

    var info = stat()
    fstat(responseFile, &info)
    let length = Int(info.st_size)
    let kept = min(length, Int(request.responseLimit) + 1)
    var offset = 0
    var buffer = [UInt8](repeating: 0, count: 1 << 20)
    while offset < kept {
        let count = buffer.withUnsafeMutableBytes { pread(responseFile, $0.baseAddress, min($0.count, kept - offset), off_t(offset)) }
        if count <= 0 { break }
        writeAll(responseDisk, Array(buffer.prefix(count)), at: GuestProtocol.responseOffset + offset)
        offset += count
    }
    return GuestProtocol.Response(termination: termination, responseLength: UInt64(length))
}

/// Returns once every process but this init (the handler and whatever it started) has been
/// asleep, using no CPU time, for 250 ms: the handler has loaded its runtime and waits for its
/// event. A process in uninterruptible sleep (reading its image from the disk) is not asleep.
/// Returns false when the handler ended instead.
func waitUntilQuiet(handler: Int32) -> Bool {
    var lastTicks = -1, quietPolls = 0
    while quietPolls < 10 {
        usleep(25_000)
        var ticks = 0, busy = false
        for pid in processIDs() where pid != 1 {
            guard let stat = readAll("/proc/\(pid)/stat", limit: 4096), let close = stat.lastIndex(of: 0x29) else { continue }
            // After the command's closing parenthesis: state, ppid, … utime (field 14), stime (15).
            let fields = stat[(close + 2)...].split(separator: 0x20)
            guard fields.count > 12 else { continue }
            let parent = Int(String(decoding: fields[1], as: UTF8.self)) ?? 0
            if pid == 2 || parent == 2 { continue }  // kernel threads
            if pid == Int(handler) && fields[0].first == 0x5a { return false }  // "Z": it ended
            if fields[0].first != 0x53 { busy = true }  // not "S"
            ticks += (Int(String(decoding: fields[11], as: UTF8.self)) ?? 0) + (Int(String(decoding: fields[12], as: UTF8.self)) ?? 0)
        }
        quietPolls = !busy && ticks == lastTicks ? quietPolls + 1 : 0
        lastTicks = ticks
    }
    return true
}

func processIDs() -> [Int] {
    guard let directory = opendir("/proc") else { return [] }
    defer { closedir(directory) }
    var pids: [Int] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self) }
        if let pid = Int(name) { pids.append(pid) }
    }
    return pids
}

/// `O_DIRECT` on x86-64, which Glibc's module leaves out.
let directIO: Int32 = 0o40000

/// Polls the request disk, with direct reads that bypass the page cache holding what the disk
/// said at boot, until a restore's host has written the event there.
func waitForEvent(_ disk: String) -> [UInt8] {
    let descriptor = open(disk, O_RDONLY | directIO)
    let size = GuestProtocol.snapshotRequestDiskSize
    var raw: UnsafeMutableRawPointer?
    guard descriptor >= 0, posix_memalign(&raw, 4096, size) == 0, let buffer = raw else {
        say("failed: cannot read the request disk \(disk) directly")
        return []
    }
    defer { free(buffer) }
    while true {
        if pread(descriptor, buffer, 4096, 0) == 4096,
           GuestProtocol.eventMagic.elementsEqual(UnsafeRawBufferPointer(start: buffer, count: 8)) {
            // Only the sectors the event fills: reading the whole disk would touch megabytes
            // of guest memory the restored VM never had, each page a fault on the host.
            let length = (0..<4).reduce(0) { $0 | Int(buffer.load(fromByteOffset: 8 + $1, as: UInt8.self)) << (8 * $1) }
            let wanted = min(size, (GuestProtocol.eventMagic.count + 4 + length + 4095) / 4096 * 4096)
            var total = 0
            while total < wanted {
                let count = pread(descriptor, buffer + total, wanted - total, off_t(total))
                if count <= 0 { break }
                total += count
            }
            if let event = GuestProtocol.event(onDisk: Array(UnsafeRawBufferPointer(start: buffer, count: total))) { return event }
        }
        usleep(2_000)
    }
}

var responseDisk: Int32 = -1
let response: GuestProtocol.Response
do {
    response = try serve(responseDisk: &responseDisk)
} catch let error as SandboxError {
    say("failed: \(error.message)")
    response = GuestProtocol.Response(termination: .exited(125), responseLength: 0, failure: error.message,
                                      handlerMissing: error.kind == .handlerNotFound)
} catch {
    say("failed: \(error)")
    response = GuestProtocol.Response(termination: .exited(125), responseLength: 0, failure: "\(error)")
}
answer(response, on: responseDisk)
// The host may end the VM from here on: the answer is flushed.
say("answered")
powerOff()
