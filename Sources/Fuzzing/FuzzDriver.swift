import Delta
import Foundation

/// What a fuzz run saw.
public struct FuzzReport: Sendable {
    public struct Finding: Sendable {
        /// The iteration that produced the input (seeds are iterations 0..<seedCount).
        public var iteration: Int
        public var input: [UInt8]
        public var problem: String
    }

    public var target: String
    public var seed: UInt64
    public var iterations = 0
    public var accepted = 0
    public var rejected = 0
    public var findings: [Finding] = []
    public var seconds = 0.0
    /// The slowest input: iteration and seconds.
    public var slowest: (iteration: Int, seconds: Double) = (0, 0)

    public var iterationsPerSecond: Double { seconds > 0 ? Double(iterations) / seconds : 0 }
}

/// The seeded mutation loop.
///
/// Iterations first run every seed as it is, then mutants: iteration `i` mutates an entry of
/// the pool (the seeds, plus mutants that were accepted, so edits stack on inputs that got
/// past the syntax checks) with a generator seeded from `(seed, target, i)`. The same seed
/// and iteration count therefore replay the same inputs.
public struct FuzzDriver {
    public var target: FuzzTarget
    public var seed: UInt64
    /// Extra inputs (a corpus folder, earlier findings) run after the seeds and mutated like them.
    public var extraCorpus: [[UInt8]] = []
    /// An input that takes longer than this is reported as a finding (nil: not timed).
    public var slowLimit: Double?
    /// The run stops after this many findings.
    public var maxFindings = 20
    /// Called before each input runs (`mrepo-fuzz` keeps a copy for its crash handler).
    public var willRun: ((_ input: [UInt8], _ iteration: Int) -> Void)?
    /// Called before the input of an iteration is made (a crash here is the mutator's).
    public var willMutate: ((_ iteration: Int) -> Void)?
    /// Called every `progressInterval` iterations.
    public var progress: ((FuzzReport) -> Void)?
    public var progressInterval = 10_000

    /// Accepted mutants kept for further mutation.
    static let poolLimit = 256

    public init(target: FuzzTarget, seed: UInt64) {
        self.target = target
        self.seed = seed
    }

    /// Runs `iterations` inputs (at least the seeds and the extra corpus) in a fresh scratch folder.
    public func run(iterations: Int) throws -> FuzzReport {
        let scratch = NSTemporaryDirectory() + "mrepo-fuzz-\(target.name)-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let runner = try target.prepare(scratch)
        let seeds = try target.seeds() + target.hostile() + extraCorpus
        var pool = seeds
        var report = FuzzReport(target: target.name, seed: seed)
        let clock = ContinuousClock()
        let start = clock.now
        let total = max(iterations, seeds.count)
        for i in 0..<total {
            let input: [UInt8]
            if i < seeds.count {
                input = seeds[i]
            } else {
                willMutate?(i)
                var m = Mutator(rng: SeededRandom(seed: seed, stream: target.name, index: UInt64(i)),
                                dialect: target.dialect, maxBytes: target.maxInputBytes)
                let parent = m.pick(pool)
                if let custom = target.mutate, m.chance(2) {
                    input = Array(custom(&m, parent, seeds).prefix(target.maxInputBytes))
                } else {
                    input = m.mutate(parent, corpus: seeds)
                }
            }
            willRun?(input, i)
            let began = clock.now
            let outcome = FuzzOutcome.classify(mention: target.mention) { try runner(input) }
            let took = (clock.now - began).seconds
            report.iterations += 1
            if took > report.slowest.seconds { report.slowest = (i, took) }
            switch outcome {
            case .accepted:
                report.accepted += 1
                if i >= seeds.count {
                    if pool.count < seeds.count + FuzzDriver.poolLimit {
                        pool.append(input)
                    } else {
                        var m = Mutator(rng: SeededRandom(seed: seed, stream: "pool", index: UInt64(i)), dialect: .binary, maxBytes: 0)
                        pool[seeds.count + m.below(FuzzDriver.poolLimit)] = input
                    }
                }
            case .rejected:
                report.rejected += 1
            case let .finding(problem):
                report.findings.append(.init(iteration: i, input: input, problem: problem))
            }
            if let slowLimit, took > slowLimit {
                report.findings.append(.init(iteration: i, input: input, problem: "took \(String(format: "%.2f", took)) s (limit \(slowLimit) s)"))
            }
            if report.findings.count >= maxFindings { break }
            if let progress, (i + 1) % progressInterval == 0 {
                report.seconds = (clock.now - start).seconds
                progress(report)
            }
        }
        report.seconds = (clock.now - start).seconds
        return report
    }
}

extension Duration {
    var seconds: Double {
        let (s, atto) = components
        return Double(s) + Double(atto) * 1e-18
    }
}
