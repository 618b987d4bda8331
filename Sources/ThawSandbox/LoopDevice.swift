public import ThawSandboxCore
import Glibc

/// Attaches a file to a free loop device, read-only and with autoclear: the kernel detaches the
/// device by itself once the filesystem on it is unmounted and the last descriptor is closed,
/// so a sandbox that dies, however it dies, leaves no loop device behind.
///
/// Hand-written over the loop ioctls (linux/loop.h): no package wraps them.
struct LoopDevice {
    let path: String
    /// Open until the filesystem is mounted; closing it then leaves the mount as the only user.
    let descriptor: Int32

    private static let getFree: UInt = 0x4C82  // LOOP_CTL_GET_FREE
    private static let configure: UInt = 0x4C0A  // LOOP_CONFIGURE
    private static let readOnly: UInt32 = 1  // LO_FLAGS_READ_ONLY
    private static let autoClear: UInt32 = 4  // LO_FLAGS_AUTOCLEAR

    static func attach(_ file: String) throws -> LoopDevice {
        let backing = open(file, O_RDONLY | O_CLOEXEC)
        guard backing >= 0 else {
            throw SandboxError(.setupFailed, "cannot open the image file \(file): \(SystemCalls.errorText())")
        }
        defer { close(backing) }
        let control = open("/dev/loop-control", O_RDWR | O_CLOEXEC)
        guard control >= 0 else {
            throw SandboxError(.setupFailed, "cannot open /dev/loop-control: \(SystemCalls.errorText())")
        }
        defer { close(control) }
        // Another process may take the free device between asking and configuring: ask again.
        for _ in 0..<16 {
            let number = ioctl(control, getFree)
            guard number >= 0 else {
                throw SandboxError(.setupFailed, "no free loop device: \(SystemCalls.errorText())")
            }
            let path = "/dev/loop\(number)"
            let device = open(path, O_RDONLY | O_CLOEXEC)
            guard device >= 0 else {
                throw SandboxError(.setupFailed, "cannot open \(path): \(SystemCalls.errorText())")
            }
            // struct loop_config: fd u32, block_size u32, struct loop_info64 (232 bytes, lo_flags
            // at offset 52), 64 reserved bytes.
            var config = [UInt8](repeating: 0, count: 304)
            config.withUnsafeMutableBytes { raw in
                raw.storeBytes(of: UInt32(backing), toByteOffset: 0, as: UInt32.self)
                raw.storeBytes(of: readOnly | autoClear, toByteOffset: 8 + 52, as: UInt32.self)
            }
            let result = config.withUnsafeMutableBytes { ioctl(device, configure, $0.baseAddress!) }
            if result == 0 { return LoopDevice(path: path, descriptor: device) }
            let code = errno
            close(device)
            guard code == EBUSY else {
                throw SandboxError(.setupFailed, "cannot attach \(file) to \(path): \(SystemCalls.errorText(code))")
            }
        }
        throw SandboxError(.setupFailed, "cannot attach \(file): every free loop device was taken first")
    }

    func closeDescriptor() { close(descriptor) }

    /// Whether `/dev/NAME` has a backing file.
    static func isAttached(_ name: String) -> Bool {
        access("/sys/block/\(name)/loop/backing_file", F_OK) == 0
    }

    /// The sysfs file of `setting` in the block queue of `device` (a /dev path).
    static func queueSetting(_ setting: String, of device: String) -> String {
        let name = device.split(separator: "/").last.map(String.init) ?? device
        return "/sys/block/\(name)/queue/\(setting)"
    }

    /// Sets the block queue's read-ahead, which the filesystem mounted on it inherits.
    func setReadAhead(kib: Int) throws {
        let setting = Self.queueSetting("read_ahead_kb", of: path)
        let file = open(setting, O_WRONLY | O_CLOEXEC)
        guard file >= 0 else { throw SandboxError(.setupFailed, "cannot open \(setting): \(SystemCalls.errorText())") }
        defer { close(file) }
        let text = Array("\(kib)\n".utf8)
        guard write(file, text, text.count) == text.count else {
            throw SandboxError(.setupFailed, "cannot set \(setting) to \(kib): \(SystemCalls.errorText())")
        }
    }
}
