import Glibc
import ThawSandboxCore

/// The microVM's init, after the initramfs's `/init` has mounted proc, sysfs and devtmpfs and
/// loaded the virtio and overlay modules: finds its three disks, mounts the image read-only
/// under a tmpfs overlay, runs the handler with the event, writes the response to the response
/// disk and restarts the VM, which qemu (`-no-reboot`) turns into an exit.
///
/// Progress goes to the console as `thaw-guest: STEP` lines, which the host timestamps.
/// A static executable with no Foundation: the initramfs has no libraries.

func say(_ line: String) {
    let text = Array(("thaw-guest: " + line + "\n").utf8)
    _ = write(1, text, text.count)
}

func readAll(_ path: String, limit: Int) -> [UInt8]? {
    let descriptor = open(path, O_RDONLY)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    var bytes = [UInt8](repeating: 0, count: limit)
    var total = 0
    while total < limit {
        let count = bytes[total...].withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        if count <= 0 { break }
        total += count
    }
    return Array(bytes.prefix(total))
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
    let eventPath = "/run/event"
    let eventFile = open(eventPath, O_RDWR | O_CREAT | O_TRUNC, 0o600)
    writeAll(eventFile, request.event, at: 0)
    lseek(eventFile, 0, SEEK_SET)
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
powerOff()
