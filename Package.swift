// swift-tools-version: 6.1
// mrepo: git for model checkpoints.
//
// Dependencies point one way: mrepo (CLI) → Repo → Merge → Delta (ARCHITECTURE.md).
// System C libraries come in as systemLibrary targets (see docs/guide.md, "Building").
// Linux only: the Delta and Repo layers call Glibc (syncfs, sync_file_range, flock, mmap) directly,
// so no other platform is declared.
import PackageDescription

let package = Package(
    name: "mrepo",
    products: [
        .executable(name: "mrepo", targets: ["mrepo"]),
        .executable(name: "mrepo-bench", targets: ["mrepo-bench"]),
        .executable(name: "mrepo-fuzz", targets: ["mrepo-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // The HTTP server of `mrepo serve`. Traits off: swift-configuration is not needed (docs/serving.md
        // notes the cold-build time this package adds).
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        // HTTP for S3-compatible remotes (docs/remotes.md notes what it adds to a cold build).
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        // Named for their products only; Hummingbird and async-http-client depend on them already.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.34.1"),
    ],
    targets: [
        // System libraries (Debian: libzstd-dev, libopenblas-dev, libssl-dev; SQLite comes through GRDB).
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // OpenBLAS's C ABI; the library itself is loaded with dlopen on first use (see the shim).
        .systemLibrary(name: "COpenBLAS"),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // syncfs and sync_file_range, which Swift's Glibc module hides.
        .systemLibrary(name: "CLinux"),

        // Hot loops in C, for instructions chosen at run time by what the processor offers (FMA, AVX2).
        .target(name: "CKernels"),
        // Tensors and bytes: safetensors I/O, dtypes, hashing, the lossless chunk codec, atomic files,
        // ordered exact JSON (`JSONValue`) for headers and hashed text.
        .target(name: "Delta", dependencies: ["CZstd", "CCrypto", "CLinux", "CKernels"]),
        // Merge math: methods (one file each), kernels, conflict metrics and reports, LoRA and low-rank
        // algebra, reversible merges, mergekit recipes. No storage.
        .target(name: "Merge", dependencies: ["Delta", "CKernels", "COpenBLAS", .product(name: "Yams", package: "Yams")]),
        // Object store, SQLite history, refs, working tree, hooks, remotes (folders, `mrepo serve`, S3)
        // and every command's logic.
        .target(name: "Repo", dependencies: [
            "Merge", "Delta", "CKernels", .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // Seeded synthetic checkpoints (transformer-shaped families) for the demo, tests and benchmarks.
        .target(name: "ModelFactory", dependencies: ["Delta"]),
        // `mrepo serve`: the Hugging Face Hub API and mrepo's own protocol over HTTP (Hummingbird).
        .target(name: "Serve", dependencies: [
            "Repo", "Delta", "CCrypto", .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            // The response parts the send timeout sees (Hummingbird's HTTP1 pipeline uses them).
            .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
        ]),
        // The command-line tool: parses, calls one Repo API, prints.
        .executableTarget(name: "mrepo", dependencies: [
            "Repo", "ModelFactory", "Serve",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Benchmarks (not tests): `swift run -c release mrepo-bench`.
        .executableTarget(name: "mrepo-bench", dependencies: [
            "Delta", "ModelFactory",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Seeded mutation fuzzing of every parser of untrusted bytes (docs/fuzzing.md).
        .target(name: "Fuzzing", dependencies: ["Repo", "Merge", "Delta"]),
        // The fuzz driver: `scripts/fuzz.sh`, or `swift run -c release mrepo-fuzz --help`.
        .executableTarget(name: "mrepo-fuzz", dependencies: ["Fuzzing"]),

        // Helpers every test target shares (temporary folders, expectThrows, hand-built files); Tests/README.md.
        .target(name: "MrepoTestSupport", dependencies: ["Delta"], path: "Tests/MrepoTestSupport"),
        .testTarget(name: "DeltaTests", dependencies: ["MrepoTestSupport", "Delta", "ModelFactory"]),
        .testTarget(name: "MergeTests", dependencies: ["MrepoTestSupport", "Merge", "Delta"], exclude: ["Golden", "Fixtures"]),
        .testTarget(name: "RepoTests", dependencies: ["MrepoTestSupport", "Repo", "ModelFactory"]),
        .testTarget(name: "CLITests", dependencies: ["MrepoTestSupport", "mrepo", "Delta", "ModelFactory"]),
        .testTarget(name: "ServeTests", dependencies: ["MrepoTestSupport", "Serve", "Repo", "Delta", "ModelFactory"]),
        .testTarget(name: "FuzzTests", dependencies: ["MrepoTestSupport", "Fuzzing", "Repo", "Merge", "Delta"]),
    ]
)
