import Foundation
import Testing
@testable import ThawSandbox
import ThawSandboxCore
import ThawTestSupport

@Suite struct GuestFormatTests {
    @Test func aRequestRoundTripsAndFillsWholeSectors() throws {
        let launch = HandlerLauncher.Launch(arguments: ["python3", "-c", "print('é')"], environment: ["A=1", "PATH=/bin"],
                                            workingDirectory: "/srv", user: "app:staff")
        let request = GuestProtocol.Request(launch: launch, tmpSize: 64 << 20, responseLimit: 6 << 20, event: Array(#"{"x":1}"#.utf8))
        let bytes = request.encoded()
        #expect(bytes.count % 512 == 0)
        #expect(try GuestProtocol.Request(decoding: bytes) == request)
        #expect(throws: SandboxError.self) { try GuestProtocol.Request(decoding: Array(bytes.prefix(20))) }
        #expect(throws: SandboxError.self) { try GuestProtocol.Request(decoding: Array(repeating: 0, count: 512)) }
    }

    @Test func aSnapshotRequestAndARestoresEventDiskRoundTrip() throws {
        let launch = HandlerLauncher.Launch(arguments: ["/function/handler"], environment: [], workingDirectory: "/", user: "")
        let request = GuestProtocol.Request(launch: launch, tmpSize: 1 << 20, responseLimit: 4096, event: [], snapshot: true)
        #expect(try GuestProtocol.Request(decoding: request.encoded()).snapshot)
        #expect(try GuestProtocol.Request(decoding: GuestProtocol.Request(launch: launch, tmpSize: 1, responseLimit: 1, event: [1]).encoded()).snapshot == false)

        let event = Array(#"{"big":"\#(String(repeating: "x", count: 100_000))"}"#.utf8)
        let disk = try GuestProtocol.eventDisk(event)
        #expect(disk.count == GuestProtocol.snapshotRequestDiskSize, "a restore's request disk has the snapshot's size")
        #expect(GuestProtocol.event(onDisk: disk) == event)
        #expect(GuestProtocol.event(onDisk: request.encoded()) == nil, "the snapshot's own request is no event")
        #expect(throws: SandboxError.self) { try GuestProtocol.eventDisk([UInt8](repeating: 1, count: GuestProtocol.snapshotRequestDiskSize)) }
    }

    @Test func aResponseHeaderRoundTripsAndThePlaceholderMeansNoAnswer() throws {
        for response in [
            GuestProtocol.Response(termination: .exited(0), responseLength: 1234),
            GuestProtocol.Response(termination: .signalled(9), responseLength: 0),
            GuestProtocol.Response(termination: .exited(125), responseLength: 0, failure: "no disks", handlerMissing: true),
        ] {
            let header = response.encodedHeader()
            #expect(header.count == GuestProtocol.responseOffset)
            #expect(try GuestProtocol.Response(decodingHeader: header) == response)
        }
        let placeholder = GuestProtocol.emptyResponseMagic + [UInt8](repeating: 0, count: 100)
        #expect(try GuestProtocol.Response(decodingHeader: placeholder) == nil)
        #expect(throws: SandboxError.self) { try GuestProtocol.Response(decodingHeader: Array("garbage!".utf8)) }
    }

    /// The initramfs writer checked against a real cpio reader (busybox's).
    @Test func theInitramfsArchiveIsReadByCpio() throws {
        try TestSupport.withTemporaryDirectory { dir in
            var archive = CPIOArchive()
            archive.add("bin", .directory)
            archive.add("bin/tool", .file(Array("#!/bin/sh\necho hi\n".utf8)))
            archive.add("bin/sh", .symlink("tool"))
            archive.add("odd-length-name", .file(Array(repeating: 7, count: 1001)), mode: 0o600)
            let bytes = archive.finish()
            #expect(bytes.count % 512 == 0)
            try Data(bytes).write(to: URL(fileURLWithPath: dir + "/a.cpio"))
            let listing = try TestSupport.run("sh", ["-c", "busybox cpio -tv < \(dir)/a.cpio"]).output
            #expect(listing.contains("bin/tool"))
            #expect(listing.contains("bin/sh -> tool"))
            #expect(listing.contains("-rw-------"))
            #expect(listing.contains("1001"))
            try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
            try TestSupport.run("sh", ["-c", "cd \(dir)/out && busybox cpio -id < \(dir)/a.cpio"])
            #expect(FileManager.default.contents(atPath: dir + "/out/bin/tool") == Data("#!/bin/sh\necho hi\n".utf8))
            #expect(FileManager.default.contents(atPath: dir + "/out/odd-length-name") == Data(repeating: 7, count: 1001))
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: dir + "/out/bin/sh") == "tool")
        }
    }

    @Test func theQemuCommandLineFollowsTheAccelerator() throws {
        let assets = MicroVMAssets(kernel: "/boot/vmlinuz-x", initramfs: "/i.cpio")
        let tcg = MicroVMSandbox(options: .init(assets: assets, accelerator: .tcg))
            .arguments(root: .nbd("nbd+unix:///id?socket=/s"), request: "/r", response: "/o")
        #expect(tcg.contains("microvm,pit=on,pic=on,rtc=on"))
        #expect(tcg.contains { $0.contains("tsc_early_khz=2000000 no_timer_check") })
        #expect(tcg.contains("file=nbd+unix:///id?socket=/s,format=raw,if=none,id=root,readonly=on"))
        let kvm = MicroVMSandbox(options: .init(assets: assets, accelerator: .kvm))
            .arguments(root: .file("/f.ext4"), request: "/r", response: "/o")
        #expect(kvm.contains("kvm") && kvm.contains("host"))
        #expect(!kvm.contains { $0.contains("tsc_early_khz") })
    }
}
