import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

struct ResolveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resolve",
        abstract: "Settle unresolved tensors of a stopped merge.",
        discussion: "Patterns are globs over tensor names ('*.attention.*', 'encoder.layer.3.*'). When none is left, 'mrepo merge --continue' (or 'mrepo commit') records the merge.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Tensor name patterns (globs).", valueName: "glob"))
    var patterns: [String]

    @Flag(help: "Take the current branch's tensor; when the current branch is the merge base (it has no change of its own), the first merged branch's, as --file-conflict ours does (--base keeps the base's).")
    var ours = false

    @Flag(help: "Take a merged branch's tensor (the last branch, or the one named with --branch).")
    var theirs = false

    @Option(help: ArgumentHelp("With --theirs: which merged branch.", valueName: "branch"))
    var branch: String?

    @Flag(name: .customLong("base"), help: "Keep the merge base's tensor.")
    var useBase = false

    @Option(help: ArgumentHelp("Merge these tensors with another method (thresholds do not apply).", valueName: "method"),
            completion: .list(MethodRegistry.ids))
    var method: String?

    @Option(name: .customLong("set"), help: ArgumentHelp("A parameter of --method, e.g. --set density=0.3 (repeatable).", valueName: "name=value"))
    var settings: [ParameterSetting] = []

    @Option(help: ArgumentHelp("Seed for --method.", valueName: "n"))
    var seed: UInt64 = 0

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        let count = [ours, theirs, useBase, method != nil].filter { $0 }.count
        if count != 1 { throw ValidationError("choose exactly one of --ours, --theirs, --base, --method") }
        if branch != nil && !theirs { throw ValidationError("--branch goes with --theirs") }
    }

    func run() throws {
        let repo = try repository.open()
        let resolution: Resolution
        if ours {
            resolution = .ours
        } else if theirs {
            resolution = .theirs(branch)
        } else if useBase {
            resolution = .base
        } else {
            var recipe = MergeRecipe(method: method!, experts: [], seed: seed)
            for s in settings {
                if s.glob != nil { throw ValidationError("'\(s.text)': resolve takes no glob in --set (the patterns choose the tensors)") }
                recipe.parameters[s.name] = s.value
            }
            resolution = .method(recipe)
        }
        let (resolved, remaining) = try repo.resolveMerge(patterns, with: resolution, wait: lock.wait)
        if json {
            try printJSON(ResolveDocument(resolved: resolved.map { "\($0)" }, unresolved: remaining.map { "\($0)" }))
            return
        }
        guard !repository.quiet else { return }
        print("Resolved \(resolved.count) tensor\(resolved.count == 1 ? "" : "s"); \(remaining.count) unresolved.")
        if remaining.isEmpty {
            let command = (try? repo.mergeInProgress())??.operation ?? "merge"
            print("All conflicts are resolved; run 'mrepo \(command) --continue'.")
        }
    }
}
