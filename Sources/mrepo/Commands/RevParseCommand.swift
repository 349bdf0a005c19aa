import ArgumentParser
import Delta
import Foundation
import Repo

struct RevParseCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rev-parse",
        abstract: "Print the full commit id each revision names.",
        discussion: """
            Takes every form a revision can have: a branch, a tag, HEAD, an id or a unique prefix, \
            REV~N and REV^N, REV^{}, HEAD@{N} and BRANCH@{N} (where it pointed N moves ago), ORIG_HEAD, \
            - or @{-N} (the previous branch). --abbrev-ref prints the branch name instead.

            As in git's scripts: --verify checks that exactly one revision is given and names a commit \
            (with -q, a revision that names nothing exits 1 and prints nothing); --show-toplevel prints \
            the working tree's folder.
            """)

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("Revisions to resolve.", valueName: "rev"), completion: CompletionNames.revisions)
    var revisions: [String] = []

    @Flag(help: "Print 12-digit ids.")
    var short = false

    @Flag(help: "Print the branch a revision names (HEAD: the current branch; HEAD when detached).")
    var abbrevRef = false

    @Flag(help: "Check that exactly one revision is given and that it names a commit; print its id (with -q, exit 1 quietly when it names nothing).")
    var verify = false

    @Flag(help: "Print the folder of the working tree (its top, where .mrepo is).")
    var showToplevel = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        if verify && revisions.count != 1 { throw ValidationError("--verify takes exactly one revision") }
        if showToplevel && (!revisions.isEmpty || verify || abbrevRef || short) { throw ValidationError("--show-toplevel takes no revision and no other option") }
        if !showToplevel && revisions.isEmpty { throw ValidationError("name a revision (or --show-toplevel)") }
    }

    func run() throws {
        let repo = try repository.open(access: .readOnly)
        if showToplevel {
            if json { try printJSON(NamedValues(members: [("toplevel", repo.root)])) } else { print(repo.root) }
            return
        }
        if verify, repository.quiet {
            // git's `rev-parse --verify -q`: a revision that names nothing is a quiet status 1.
            // Any revision that names no commit: an unknown name, an unborn HEAD, HEAD~99, a reflog too short.
            do { _ = try repo.resolve(revisions[0]) } catch is RepoError { throw ExitCode(1) }
        }
        var out: [(String, String)] = []
        for rev in revisions {
            if abbrevRef {
                if rev == "HEAD" || rev == "@" {
                    out.append((rev, try repo.currentBranch() ?? "HEAD"))
                } else if rev == "-" || rev.hasPrefix("@{-") {
                    out.append((rev, try repo.previousBranch(rev == "-" ? 1 : Int(rev.dropFirst(3).dropLast()) ?? 1)))
                } else if try repo.ref(named: rev) != nil {
                    out.append((rev, rev))
                } else {
                    _ = try repo.resolve(rev)
                    out.append((rev, rev))
                }
                continue
            }
            let id = try repo.resolve(rev)
            out.append((rev, short ? id.short : id.hex))
        }
        if json {
            try printJSON(out.map { NamedValues(members: [("revision", $0.0), (abbrevRef ? "name" : "id", $0.1)]) })
        } else {
            for (_, v) in out { print(v) }
        }
    }
}
