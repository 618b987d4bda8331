// swift-tools-version:6.1
import PackageDescription

/// Thaw's targets follow its pipeline: image → flatten → (seal → store → cache → serve → sandbox).
/// Pure formats (tar, ext4) have their own targets and perform no I/O of their own.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "Thaw",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "thaw", targets: ["ThawCLI"]),
        .executable(name: "thaw-bench", targets: ["ThawBench"]),
        .executable(name: "thaw-guest", targets: ["ThawGuest"]),
        .library(name: "ThawFlatten", targets: ["ThawFlatten"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/adam-fowler/compress-nio", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // libzstd from Debian (libzstd-dev), for tar+zstd layers.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),

        // Pure tar format: headers, pax records, GNU long names; a streaming reader and a writer.
        .target(name: "ThawTar", swiftSettings: strict),

        // OCI image layouts and docker archives: references, descriptors, verified layer streams.
        .target(
            name: "ThawImage",
            dependencies: [
                "ThawTar", "CZstd", "CISAL",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),

        // Pure ext4 format: superblock, group descriptors, inodes, extent trees, directories, xattrs.
        .target(name: "ThawExt4", swiftSettings: strict),

        // OCI layers → one deterministic ext4 image with a chunk-aligned region per layer.
        .target(
            name: "ThawFlatten",
            dependencies: [
                "ThawImage", "ThawExt4", "ThawTar", "ThawBinary",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),

        // Little-endian binary fields with truncation errors, shared by Thaw's own formats.
        .target(name: "ThawBinary", swiftSettings: strict),

        // Convergent chunk sealing, salts, and the sealed manifest format with tenant key providers.
        .target(
            name: "ThawSeal",
            dependencies: [
                "CMalloc", "COpenSSLCrypto", "ThawBinary",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),

        // OpenSSL's libcrypto from Debian (libssl-dev): AES-CTR into caller memory for the serving path.
        .systemLibrary(name: "COpenSSLCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),

        // prctl and other variadic Linux calls Swift cannot make directly, wrapped.
        .systemLibrary(name: "CLinux"),

        // glibc's malloc tunables: large per-chunk buffers must not be returned to the kernel on every free.
        .systemLibrary(name: "CMalloc"),

        // AWS Signature V4 and the standard AWS configuration (environment, ~/.aws/config, ~/.aws/credentials).
        .target(
            name: "ThawAWS",
            dependencies: ["ThawBinary", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),

        // Content-addressed stores: the ChunkStore protocol, the directory store and the S3 store.
        .target(
            name: "ThawStore",
            dependencies: [
                "ThawSeal", "ThawAWS",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),

        // Push (flatten, seal and upload in one pass), pull and inspect.
        .target(
            name: "ThawPush",
            dependencies: [
                "ThawFlatten", "ThawExt4", "ThawImage", "ThawSeal", "ThawStore", "ThawBinary", "ThawMedes", "ThawMetadata",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strict
        ),

        // A small generated OCI image, for `thaw demo` and for tests.
        .target(
            name: "ThawSample",
            dependencies: [
                "ThawTar", "ThawImage", "CZstd",
                .product(name: "CompressNIO", package: "compress-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // The AWS Lambda REST API over Thaw's functions: wire models, the operations, SigV4-checked routes,
        // the instance pool and its controller, and the cluster of agents behind one API.
        .target(
            name: "ThawLambdaAPI",
            dependencies: [
                "ThawMetadata", "ThawSeal", "ThawAWS",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        .executableTarget(
            name: "ThawCLI",
            dependencies: [
                "ThawFlatten", "ThawImage", "ThawSample", "ThawSeal", "ThawStore", "ThawPush", "ThawBinary", "ThawAgent",
                "ThawCache", "ThawL2", "ThawMetadata", "ThawGC", "ThawServe", "ThawMedes", "ThawNBD", "ThawSandbox", "ThawSandboxCore",
                "ThawLambdaAPI", "ThawAWS",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // The worker's L1 chunk cache: LRU-K eviction, a memory tier and a disk tier of verified ciphertext.
        .target(
            name: "ThawCache",
            dependencies: [
                "ThawSeal",
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // Similar-page deduplication of memory snapshots (Medes): page fingerprints, page patches,
        // chunk deltas against a base snapshot and their rebuilding. Pure: no I/O of its own.
        .target(
            name: "ThawMedes",
            dependencies: ["ThawSeal", "ThawStore", "CZstd", .product(name: "Crypto", package: "swift-crypto")],
            swiftSettings: strict
        ),

        // Figures for the README's performance section (Benchmarks/*.py drive it).
        .executableTarget(
            name: "ThawBench",
            dependencies: [
                "ThawSeal", "ThawCache", "ThawErasure", "ThawL2", "ThawMedes", "ThawAWS",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HeapModule", package: "swift-collections"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Benchmarks/ThawBench",
            swiftSettings: strict
        ),

        // The NBD wire format for a read-only server: handshake state machine, request parser, replies. No I/O.
        .target(name: "ThawNBDProtocol", swiftSettings: strict),

        // The NBD server over TCP or a Unix socket, serving exports from a catalog.
        .target(
            name: "ThawNBD",
            dependencies: [
                "ThawNBDProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),

        // The lazy read path: serves reads of a pushed image, fetching only the chunks read.
        .target(
            name: "ThawServe",
            dependencies: [
                "ThawSeal", "ThawStore", "ThawCache", "ThawL2", "ThawBinary", "ThawMedes",
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            swiftSettings: strict
        ),

        // libfuse3 from Debian (libfuse3-dev): the kernel's FUSE protocol through the high-level API.
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),

        // Read-only files served through FUSE, so the kernel can loop-mount them and a VMM open them.
        .target(
            name: "ThawFUSE",
            dependencies: [
                "CFuse3",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),

        // The worker agent: serves manifests over NBD and FUSE through one L1 cache, records and
        // prefetches starts, and answers its control and Prometheus endpoint.
        .target(
            name: "ThawAgent",
            dependencies: [
                "ThawServe", "ThawNBD", "ThawFUSE", "ThawPush", "ThawImage", "ThawCache", "ThawL2", "ThawMetadata", "ThawStore", "ThawSeal",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),

        // What every sandbox's init shares, with no Foundation (the microVM's guest init is a static
        // binary): users, mounts, spawning and reaping the handler, the guest request format.
        .target(name: "ThawSandboxCore", dependencies: ["ThawBinary"], swiftSettings: strict),

        // Sandboxes: the process sandbox (namespaces, a read-only loop mount of the image under a
        // tmpfs overlay, chroot) and the microVM (qemu -M microvm with Thaw's initramfs).
        .target(
            name: "ThawSandbox",
            dependencies: [
                "ThawSandboxCore", "ThawImage", "ThawBinary", "CLinux",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),

        // The microVM's init: mounts the image, runs the handler, returns its response. Built as a
        // static executable into Thaw's initramfs (scripts/build-guest.sh).
        .executableTarget(name: "ThawGuest", dependencies: ["ThawSandboxCore"], swiftSettings: strict),

        // ISA-L from Debian (libisal-dev): vectorized Reed-Solomon coding over GF(2^8).
        .systemLibrary(name: "CISAL", pkgConfig: "libisal", providers: [.apt(["libisal-dev"])]),

        // Roots, manifests, function names, read marks and leases: SQLite (GRDB) or PostgreSQL (postgres-nio).
        .target(
            name: "ThawMetadata",
            dependencies: [
                "ThawSeal",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        // Garbage collection by rotating roots: rotate, copy forward, expire, delete.
        .target(
            name: "ThawGC",
            dependencies: [
                "ThawMetadata", "ThawStore", "ThawSeal", "ThawMedes",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),

        // Erasure coding of chunks for the shared L2 cache: k data and m parity shards.
        .target(name: "ThawErasure", dependencies: ["CISAL"], swiftSettings: strict),

        // The shared L2 cache: a memcached client over swift-nio.
        .target(
            name: "ThawL2",
            dependencies: [
                "ThawErasure", "ThawSeal",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),

        .target(name: "ThawTestSupport", path: "Tests/ThawTestSupport", exclude: [], swiftSettings: strict),
        .target(name: "ThawStoreTestSupport", dependencies: ["ThawStore", "ThawSeal"], path: "Tests/ThawStoreTestSupport", swiftSettings: strict),
        .testTarget(name: "ThawTarTests", dependencies: ["ThawTar"], swiftSettings: strict),
        .testTarget(name: "ThawImageTests", dependencies: ["ThawImage", "ThawSample", "ThawTar", "ThawTestSupport"], swiftSettings: strict),
        .testTarget(name: "ThawExt4Tests", dependencies: ["ThawExt4", "ThawTestSupport"], swiftSettings: strict),
        .testTarget(name: "ThawSealTests", dependencies: ["ThawSeal", "ThawBinary", "ThawTestSupport"], swiftSettings: strict),
        .testTarget(name: "ThawAWSTests", dependencies: ["ThawAWS", "ThawTestSupport"], swiftSettings: strict),
        .testTarget(name: "ThawLambdaAPITests", dependencies: ["ThawLambdaAPI"], swiftSettings: strict),
        .testTarget(name: "ThawMedesTests", dependencies: ["ThawMedes", "ThawTestSupport"], swiftSettings: strict),
        .testTarget(name: "ThawNBDProtocolTests", dependencies: ["ThawNBDProtocol"], swiftSettings: strict),
        .testTarget(
            name: "ThawNBDTests",
            dependencies: [
                "ThawNBD", "ThawNBDProtocol", "ThawTestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "ThawStoreTests", dependencies: ["ThawStore", "ThawSeal", "ThawAWS", "ThawTestSupport", "ThawStoreTestSupport"], swiftSettings: strict),
        .testTarget(name: "ThawCacheTests", dependencies: ["ThawCache", "ThawSeal", "ThawTestSupport"], swiftSettings: strict),
        .testTarget(
            name: "ThawPushTests",
            dependencies: ["ThawPush", "ThawStore", "ThawSeal", "ThawFlatten", "ThawImage", "ThawMetadata", "ThawSample", "ThawTestSupport",
                           "ThawStoreTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ThawServeTests",
            dependencies: ["ThawServe", "ThawCache", "ThawL2", "ThawPush", "ThawStore", "ThawSeal", "ThawFlatten", "ThawImage", "ThawMedes", "ThawTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(name: "ThawFUSETests", dependencies: ["ThawFUSE", "ThawTestSupport"], swiftSettings: strict),
        .testTarget(
            name: "ThawAgentTests",
            dependencies: [
                "ThawAgent", "ThawServe", "ThawPush", "ThawStore", "ThawSeal", "ThawNBD", "ThawSample", "ThawTestSupport",
                "ThawStoreTestSupport", "ThawCache", "ThawImage",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ThawSandboxTests",
            dependencies: [
                "ThawSandbox", "ThawSandboxCore", "ThawImage", "ThawSample", "ThawPush", "ThawStore", "ThawSeal", "ThawMedes", "ThawMetadata", "ThawLambdaAPI", "ThawTestSupport",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strict
        ),
        .testTarget(name: "ThawErasureTests", dependencies: ["ThawErasure"], swiftSettings: strict),
        .testTarget(name: "ThawMetadataTests", dependencies: ["ThawMetadata", "ThawSeal", "ThawTestSupport"], swiftSettings: strict),
        .testTarget(
            name: "ThawGCTests",
            dependencies: [
                "ThawGC", "ThawMetadata", "ThawPush", "ThawStore", "ThawSeal", "ThawImage", "ThawServe", "ThawMedes", "ThawTestSupport",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ThawL2Tests",
            dependencies: ["ThawL2", "ThawSeal", "ThawTestSupport", .product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "ThawFlattenTests",
            dependencies: ["ThawFlatten", "ThawImage", "ThawSample", "ThawExt4", "ThawTar", "ThawTestSupport"],
            swiftSettings: strict
        ),
    ]
)
