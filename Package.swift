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
        // HTTP for S3-compatible remotes (docs/remotes.md notes what it adds to a cold build).
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        // Named for its products only; async-http-client depends on it already.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
    ],
    targets: [
        // System libraries (Debian: libzstd-dev, libopenblas-dev, libssl-dev; SQLite comes through GRDB).
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // OpenBLAS's C ABI; the library itself is loaded with dlopen on first use (see the shim).
        .systemLibrary(name: "COpenBLAS"),
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        // syncfs and sync_file_range, which Swift's Glibc module hides.
        .systemLibrary(name: "CLinux"),

        // Tensors and bytes: safetensors I/O, dtypes, hashing, the lossless chunk codec.
        .target(name: "Delta", dependencies: ["CZstd", "CCrypto", "CLinux"]),
        // Merge math: methods (one file each), kernels, conflict metrics and reports, LoRA and low-rank
        // algebra, reversible merges, mergekit recipes. No storage.
        .target(name: "Merge", dependencies: ["Delta", "COpenBLAS", .product(name: "Yams", package: "Yams")]),
        // Object store, SQLite history, refs, working tree, hooks and every command's logic.
        .target(name: "Repo", dependencies: [
            "Merge", "Delta", .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // Seeded synthetic checkpoints (transformer-shaped families) for the demo, tests and benchmarks.
        .target(name: "ModelFactory", dependencies: ["Delta"]),
        // The command-line tool: parses, calls one Repo API, prints.
        .executableTarget(name: "mrepo", dependencies: [
            "Repo", "ModelFactory",
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

        .testTarget(name: "DeltaTests", dependencies: ["Delta", "ModelFactory"]),
        .testTarget(name: "MergeTests", dependencies: ["Merge", "Delta"], exclude: ["Golden", "Fixtures"]),
        .testTarget(name: "RepoTests", dependencies: ["Repo", "ModelFactory"]),
        .testTarget(name: "CLITests", dependencies: ["mrepo", "Delta", "ModelFactory"]),
        .testTarget(name: "FuzzTests", dependencies: ["Fuzzing", "Repo", "Merge", "Delta"]),
    ]
)
