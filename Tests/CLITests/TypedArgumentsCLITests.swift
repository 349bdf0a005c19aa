import Foundation
import Testing

/// Structured options are parsed with the command line: a malformed value is a one-line usage
/// error (exit 64) naming the option, before any repository is opened.
@Suite struct TypedArgumentsCLITests {
    @Test(arguments: [
        (["merge", "a", "--weight", "a"], "'--weight <branch=w>'"),
        (["merge", "a", "--weight", "a=heavy"], "'--weight <branch=w>'"),
        (["merge", "a", "--set", "density"], "'--set <name=value>'"),
        (["merge", "a", "--set", "density[]=0.3"], "'--set <name=value>'"),
        (["merge", "a", "--set", "density[[]=0.3"], "'--set <name=value>'"),
        (["merge", "a", "--expert", "a-density=0.3"], "'--expert <branch:name=value>'"),
        (["merge", "a", "--lines", "0.3"], "'--lines <alpha,beta>'"),
        (["merge", "a", "--consensus", "2,x"], "'--consensus <k[,lambda]>'"),
        (["merge", "a", "--dtype", "I32"], "'--dtype <dtype>'"),
        (["merge", "a", "--balance", "max"], "'--balance <norm|none>'"),
        (["merge", "a", "--search", "--eval", "true", "--objective", "best"], "'--objective <objective>'"),
        (["resolve", "*", "--method", "ties", "--set", "x"], "'--set <name=value>'"),
        (["merge", "--help-method", "nosuch"], "unknown merge method 'nosuch'"),
        (["commit", "--author", "Bob", "-m", "x"], "--author 'Bob' is not 'Name <email>'"),
        (["commit", "--author", "Bob <b@x>\nDate: 1970", "-m", "x"], "is not 'Name <email>'"),
    ])
    func malformedValuesAreUsageErrors(_ arguments: [String], option: String) throws {
        let s = try CLISandbox()
        expectOneLineError(try s.run(arguments), status: 64, contains: option)
    }

    /// A negative number given as an option's value reaches the option's own check, which says what
    /// is allowed; the parser alone read it as an option and said the value was missing.
    @Test(arguments: [
        (["commit", "--lowrank", "-1", "-m", "x"], "--lowrank must be at least 1, got -1"),
        (["merge", "a", "--method", "dare_ties", "--seed", "-3"], "--seed"),
        (["merge", "a", "--search", "--eval", "true", "--trials", "-2"], "--trials"),
    ])
    func negativeNumbersReachTheOptionsCheck(_ arguments: [String], message: String) throws {
        let s = try CLISandbox()
        try s.ok(["init", "-q", "r"])
        let r = try s.run(arguments, in: "r")
        expectOneLineError(r, status: 64, contains: message)
        #expect(!r.stderr.contains("Missing value"), "\(r.stderr)")
    }

    /// NaN and infinity parse as numbers: a λ of NaN made the merge the base without a word (and
    /// recorded a recipe that could not be run again), a NaN threshold failed with a Swift
    /// encoding error and exit 1, a NaN LiNeS factor with a message about float32's range.
    @Test(arguments: [
        (["--consensus", "1,nan"], "'consensus' needs a finite λ, got nan"),
        (["--consensus", "1,inf"], "'consensus' needs a finite λ, got inf"),
        (["--min-cosine", "nan"], "'min-cosine' must be a finite number, got nan"),
        (["--max-sign-conflict", "inf"], "'max-sign-conflict' must be a finite number, got inf"),
        (["--max-conflicting-mass", "inf"], "'max-conflicting-mass' must be a finite number, got inf"),
        (["--lines", "nan,1"], "'lines' needs finite α and β"),
    ])
    func nonFiniteNumbersAreRefused(_ options: [String], message: String) throws {
        let s = try CLISandbox()
        try s.ok(["init", "-q", "r"])
        let r = try s.run(["merge", "a", "b", "--method", "ties"] + options, in: "r")
        expectOneLineError(r, status: 64, contains: message)
    }
}
