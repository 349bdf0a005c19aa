import Delta
import Foundation
import Fuzzing

// The fuzz driver's command line. See docs/fuzzing.md.

let usage = """
    usage: mrepo-fuzz list
           mrepo-fuzz run [TARGET...] [--iterations N] [--seed S] [--artifacts DIR] [--corpus DIR]
                          [--memory-limit-mb M] [--hang-seconds H] [--slow-seconds X]
           mrepo-fuzz replay TARGET FILE...
           mrepo-fuzz seeds TARGET DIR

    run       fuzzes each TARGET (default: all) for N iterations (default 100000) from seed S
              (default 1). Inputs that crash, hang, or end in anything but success or a typed
              one-line error are saved under DIR (default .fuzz/artifacts). Files under
              DIR/<target>/ of --corpus (default Tests/Fuzz/corpus when present) join the seeds.
              The address space is capped at M MiB (default 4096; 0: no cap), an input running
              longer than H seconds (default 10) is saved and ends the run, and an input slower
              than X seconds (default 1) is reported.
    replay    runs each FILE through TARGET once and prints what happened.
    seeds     writes TARGET's seeds and known-hostile inputs into DIR (a corpus for libFuzzer).
    exit status: 0 no findings, 1 findings, 2 usage, 3 hang, a signal for a crash.
    """

struct Options {
    var targets: [FuzzTarget] = []
    var iterations = 100_000
    var seed: UInt64 = 1
    var artifacts = ".fuzz/artifacts"
    var corpus: String? = FileManager.default.fileExists(atPath: "Tests/Fuzz/corpus") ? "Tests/Fuzz/corpus" : nil
    var memoryLimitMB = 4096
    var hangSeconds = 10.0
    var slowSeconds = 1.0
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("mrepo-fuzz: \(message)\n".utf8))
    exit(2)
}

func target(_ name: String) -> FuzzTarget {
    guard let t = FuzzTarget.named(name) else {
        fail("unknown target '\(name)'; targets: \(FuzzTarget.all.map(\.name).joined(separator: ", "))")
    }
    return t
}

func parseRun(_ args: ArraySlice<String>) -> Options {
    var o = Options()
    var rest = args
    func value(_ flag: String) -> String {
        guard let v = rest.popFirst() else { fail("\(flag) needs a value") }
        return v
    }
    while let arg = rest.popFirst() {
        switch arg {
        case "--iterations": guard let n = Int(value(arg)), n >= 0 else { fail("--iterations takes a count") }; o.iterations = n
        case "--seed": guard let s = UInt64(value(arg)) else { fail("--seed takes a non-negative integer") }; o.seed = s
        case "--artifacts": o.artifacts = value(arg)
        case "--corpus": o.corpus = value(arg)
        case "--memory-limit-mb": guard let m = Int(value(arg)), m >= 0 else { fail("--memory-limit-mb takes MiB") }; o.memoryLimitMB = m
        case "--hang-seconds": guard let h = Double(value(arg)), h >= 0 else { fail("--hang-seconds takes seconds") }; o.hangSeconds = h
        case "--slow-seconds": guard let x = Double(value(arg)), x >= 0 else { fail("--slow-seconds takes seconds") }; o.slowSeconds = x
        case let flag where flag.hasPrefix("-"): fail("unknown option '\(flag)'\n\(usage)")
        default: o.targets.append(target(arg))
        }
    }
    if o.targets.isEmpty { o.targets = FuzzTarget.all }
    return o
}

/// Files of `<corpus>/<target>/`, in name order.
func corpus(_ folder: String?, target: String) -> [[UInt8]] {
    guard let folder else { return [] }
    let dir = folder + "/" + target
    let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
    return names.compactMap { FileManager.default.contents(atPath: dir + "/" + $0).map { Array($0) } }
}

/// Writes a line to standard output at once (no buffering: the next input may crash the process).
func printLine(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

func run(_ o: Options) -> Int32 {
    do {
        try FileManager.default.createDirectory(atPath: o.artifacts, withIntermediateDirectories: true)
    } catch {
        fail("cannot create \(o.artifacts): \(error.localizedDescription)")
    }
    CrashCapture.limitMemory(megabytes: o.memoryLimitMB)
    var findings = 0
    for t in o.targets {
        CrashCapture.install(folder: o.artifacts, target: t.name, maxInputBytes: t.maxInputBytes, hangSeconds: o.hangSeconds)
        var driver = FuzzDriver(target: t, seed: o.seed)
        driver.extraCorpus = corpus(o.corpus, target: t.name)
        driver.slowLimit = o.slowSeconds > 0 ? o.slowSeconds : nil
        driver.willRun = { input, i in CrashCapture.willRun(input, iteration: i) }
        driver.willMutate = { i in CrashCapture.willMutate(iteration: i) }
        driver.progress = { r in
            FileHandle.standardError.write(Data("  \(t.name): \(r.iterations) iterations, \(Int(r.iterationsPerSecond))/s, \(r.findings.count) findings\n".utf8))
        }
        let report: FuzzReport
        do {
            report = try driver.run(iterations: o.iterations)
        } catch {
            fail("\(t.name): cannot set up: \(error)")
        }
        CrashCapture.didRun()
        printLine(String(format: "%@: %d iterations in %.1f s (%.0f/s), %d accepted, %d rejected, %d findings, slowest %.4f s (iteration %d), seed %llu",
                         t.name, report.iterations, report.seconds, report.iterationsPerSecond, report.accepted, report.rejected,
                         report.findings.count, report.slowest.seconds, report.slowest.iteration, o.seed))
        for f in report.findings {
            let path = "\(o.artifacts)/finding-\(t.name)-\(f.iteration)"
            _ = FileManager.default.createFile(atPath: path, contents: Data(f.input))
            printLine("  iteration \(f.iteration): \(f.problem)\n    input saved to \(path)")
        }
        findings += report.findings.count
    }
    return findings == 0 ? 0 : 1
}

func replay(_ args: ArraySlice<String>) -> Int32 {
    guard let name = args.first, args.count >= 2 else { fail("replay takes a target and files\n\(usage)") }
    let t = target(name)
    let scratch = NSTemporaryDirectory() + "mrepo-fuzz-replay-" + UUID().uuidString
    try? FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    let runner: FuzzRunner
    do { runner = try t.prepare(scratch) } catch { fail("\(name): cannot set up: \(error)") }
    var status: Int32 = 0
    for file in args.dropFirst() {
        guard let data = FileManager.default.contents(atPath: file) else { fail("cannot read \(file)") }
        var message = ""
        let outcome = FuzzOutcome.classify(mention: t.mention) {
            do { try runner(Array(data)) } catch { message = "\(error)"; throw error }
        }
        switch outcome {
        case .accepted: printLine("\(file): accepted")
        case .rejected: printLine("\(file): rejected: \(message)")
        case let .finding(problem): printLine("\(file): FINDING: \(problem)"); status = 1
        }
    }
    return status
}

func writeSeeds(_ args: ArraySlice<String>) -> Int32 {
    guard args.count == 2, let name = args.first, let dir = args.last else { fail("seeds takes a target and a folder\n\(usage)") }
    let t = target(name)
    do {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (i, seed) in try t.seeds().enumerated() {
            _ = FileManager.default.createFile(atPath: "\(dir)/seed-\(i)", contents: Data(seed))
        }
        for (i, input) in try t.hostile().enumerated() {
            _ = FileManager.default.createFile(atPath: "\(dir)/hostile-\(i)", contents: Data(input))
        }
    } catch {
        fail("\(name): \(error)")
    }
    return 0
}

#if !MREPO_LIBFUZZER
@main
enum FuzzMain {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        switch args.first {
        case "list":
            for t in FuzzTarget.all { printLine("\(t.name.padding(toLength: 20, withPad: " ", startingAt: 0)) \(t.summary)") }
        case "run":
            exit(run(parseRun(args.dropFirst())))
        case "replay":
            exit(replay(args.dropFirst()))
        case "seeds":
            exit(writeSeeds(args.dropFirst()))
        case "-h", "--help", "help":
            printLine(usage)
        default:
            fail("expected list, run, replay or seeds\n\(usage)")
        }
    }
}
#endif
