import Crypto
import Foundation
public import ThawSandboxCore

/// The kernel and the initramfs a microVM boots: Debian's cloud kernel from `/boot`, and an
/// initramfs Thaw builds from Debian's static busybox, the kernel's virtio and overlay modules
/// and Thaw's guest init (`thaw-guest`, a static executable built by scripts/build-guest.sh).
///
/// The initramfs is built on first use and kept under `directory`, named by a digest of
/// everything in it, so a new kernel, busybox or guest makes a new one.
public struct MicroVMAssets: Sendable {
    /// Modules the guest loads, in this order: virtio-mmio block devices, then overlayfs (the
    /// cloud kernel builds all of them as modules; ext4 and the serial console are built in).
    public static let modules = [
        "kernel/drivers/virtio/virtio_ring.ko", "kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/virtio/virtio_mmio.ko", "kernel/drivers/block/virtio_blk.ko",
        "kernel/fs/overlayfs/overlay.ko",
    ]

    public var kernel: String
    public var initramfs: String

    /// Finds the kernel (the newest `/boot/vmlinuz-*` unless given) and builds the initramfs if
    /// it is missing.
    ///
    /// - Throws: `SandboxError(.setupFailed)` naming what is missing and how to install it.
    public static func prepare(kernel: String?, guest: String, busybox: String = "/bin/busybox",
                               directory: String) throws -> MicroVMAssets {
        let kernelPath = try kernel ?? newestKernel()
        let name = (kernelPath as NSString).lastPathComponent
        guard name.hasPrefix("vmlinuz-") else {
            throw SandboxError(.setupFailed, "the kernel \(kernelPath) is not named vmlinuz-VERSION, so its modules cannot be found")
        }
        let version = String(name.dropFirst("vmlinuz-".count))
        let moduleDirectory = "/lib/modules/" + version
        var inputs: [(String, [UInt8])] = []
        for (path, what) in [(busybox, "busybox (Debian package busybox-static)"),
                             (guest, "the guest init (build it with scripts/build-guest.sh)")] {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw SandboxError(.setupFailed, "\(path) is missing: \(what)")
            }
            inputs.append((path, Array(data)))
        }
        for module in modules {
            let path = moduleDirectory + "/" + module
            guard let data = FileManager.default.contents(atPath: path) else {
                throw SandboxError(.setupFailed, "\(path) is missing: install the kernel's package (linux-image-cloud-amd64)")
            }
            inputs.append((path, Array(data)))
        }
        var digest = SHA256()
        for (path, data) in inputs {
            digest.update(data: Array(path.utf8))
            digest.update(data: data)
        }
        digest.update(data: Array(initScript.utf8))
        let id = digest.finalize().prefix(8).map { String(format: "%02x", $0) }.joined()
        let initramfs = directory + "/initramfs-\(version)-\(id).cpio"
        if !FileManager.default.fileExists(atPath: initramfs) {
            try write(initramfs, busybox: inputs[0].1, guest: inputs[1].1,
                      modules: inputs.dropFirst(2).map { (($0.0 as NSString).lastPathComponent, $0.1) })
        }
        return MicroVMAssets(kernel: kernelPath, initramfs: initramfs)
    }

    static func newestKernel() throws -> String {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/boot")) ?? []
        guard let newest = names.filter({ $0.hasPrefix("vmlinuz-") }).sorted(by: { $0.compare($1, options: .numeric) == .orderedAscending }).last else {
            throw SandboxError(.setupFailed, "no kernel in /boot: install linux-image-cloud-amd64 (scripts/setup.sh test does)")
        }
        return "/boot/" + newest
    }

    /// The first process: mounts what the guest init needs, loads the modules in order, hands over.
    static let initScript = """
        #!/bin/busybox sh
        /bin/busybox mount -t proc proc /proc
        /bin/busybox mount -t sysfs sysfs /sys
        /bin/busybox mount -t devtmpfs devtmpfs /dev
        for module in virtio_ring virtio virtio_mmio virtio_blk overlay; do
          /bin/busybox insmod /lib/modules/$module.ko || echo "thaw-guest: failed: cannot load $module"
        done
        exec /bin/thaw-guest

        """

    static func write(_ path: String, busybox: [UInt8], guest: [UInt8], modules: [(String, [UInt8])]) throws {
        var archive = CPIOArchive()
        for directory in ["bin", "dev", "proc", "sys", "lib", "lib/modules", "lower", "rw", "newroot", "run"] {
            archive.add(directory, .directory)
        }
        // The kernel opens /dev/console for init before anything is mounted.
        archive.add("dev/console", .characterDevice(major: 5, minor: 1), mode: 0o600)
        archive.add("bin/busybox", .file(busybox))
        archive.add("bin/sh", .symlink("busybox"))
        archive.add("bin/thaw-guest", .file(guest))
        for (name, data) in modules { archive.add("lib/modules/" + name, .file(data), mode: 0o644) }
        archive.add("init", .file(Array(initScript.utf8)))
        let bytes = archive.finish()
        let directory = (path as NSString).deletingLastPathComponent
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let temporary = path + ".tmp-\(getpid())"
            try Data(bytes).write(to: URL(fileURLWithPath: temporary))
            _ = rename(temporary, path)
        } catch {
            throw SandboxError(.setupFailed, "cannot write the initramfs \(path): \(error.localizedDescription)")
        }
    }
}
