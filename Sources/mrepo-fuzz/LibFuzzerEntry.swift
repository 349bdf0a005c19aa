// libFuzzer's entry point, compiled only for a libFuzzer build (docs/fuzzing.md):
//   swift build -c release --product mrepo-fuzz --build-path .build-libfuzzer \
//       -Xswiftc -sanitize=fuzzer -Xswiftc -DMREPO_LIBFUZZER
//   MREPO_FUZZ_TARGET=recipe .build-libfuzzer/release/mrepo-fuzz CORPUS_DIR -runs=100000
// The command line of FuzzMain.swift is left out; the entry point SwiftPM links
// (`mrepo_fuzz_main`) hands the process to libFuzzer's driver instead.
#if MREPO_LIBFUZZER
import Foundation
import Fuzzing

/// The target named by MREPO_FUZZ_TARGET (default `safetensors-header`), prepared on first use.
nonisolated(unsafe) private var prepared: (target: FuzzTarget, runner: FuzzRunner)?

@_cdecl("LLVMFuzzerTestOneInput")
public func libFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    if prepared == nil {
        let name = ProcessInfo.processInfo.environment["MREPO_FUZZ_TARGET"] ?? "safetensors-header"
        guard let target = FuzzTarget.named(name) else {
            FileHandle.standardError.write(Data("mrepo-fuzz: unknown target '\(name)'\n".utf8))
            exit(2)
        }
        let scratch = NSTemporaryDirectory() + "mrepo-libfuzzer-" + UUID().uuidString
        do {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            prepared = (target, try target.prepare(scratch))
        } catch {
            FileHandle.standardError.write(Data("mrepo-fuzz: \(name): cannot set up: \(error)\n".utf8))
            exit(2)
        }
    }
    guard let (target, runner) = prepared else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data, count: data == nil ? 0 : min(size, target.maxInputBytes)))
    if case let .finding(problem) = FuzzOutcome.classify(mention: target.mention, { try runner(input) }) {
        // A finding is a crash to libFuzzer: it saves the input and stops.
        FileHandle.standardError.write(Data("mrepo-fuzz: \(target.name): \(problem)\n".utf8))
        abort()
    }
    return 0
}

/// libFuzzer's driver (FuzzerDriver.cpp), for programs that have their own `main`.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

/// SwiftPM links an executable's entry point as `<module>_main`.
@_cdecl("mrepo_fuzz_main")
public func mrepoFuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, { data, size in libFuzzerTestOneInput(data, size) })
}
#endif
