import Delta
import Foundation
import Testing

/// The forms git users type, end to end: typos, --json contracts, revisions, log and diff
/// options, refs, history editing, notes and metrics.
@Suite struct GitHabitsCLITests {
    /// A repository with base on main, math and code on their branches (math with eval_loss).
    func family() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        try s.ok(["switch", "-q", "-c", "math"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../family/math", "-m", "math fine-tune", "--metric", "eval_loss=1.9"], in: "repo")
        try s.ok(["switch", "-q", "-c", "code", "main"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../family/code", "-m", "code fine-tune"], in: "repo")
        try s.ok(["switch", "-q", "main"], in: "repo")
        return s
    }

    func lines(_ r: CLIResult) -> [String] { r.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init).filter { !$0.isEmpty } }

    func revParse(_ s: CLISandbox, _ rev: String) throws -> String {
        try s.ok(["rev-parse", rev], in: "repo").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    // MARK: - Output contracts and typos

    @Test func typosGetASuggestionAndHelpOfAnUnknownCommandFails() throws {
        let s = try family()
        let typo = try s.run(["comit", "-m", "x"], in: "repo")
        expectOneLineError(typo, status: 64, contains: "unknown command 'comit'; did you mean 'commit'?")
        expectOneLineError(try s.run(["lgo", "--oneline"], in: "repo"), status: 64, contains: "did you mean 'log'?")
        // git's index commands and -c say what to do instead (add suggested 'du').
        expectOneLineError(try s.run(["add", "."], in: "repo"), status: 64, contains: "no staging area: 'mrepo commit' records every file")
        expectOneLineError(try s.run(["rm", "model.safetensors"], in: "repo"), status: 64, contains: "delete the file")
        expectOneLineError(try s.run(["mv", "a", "b"], in: "repo"), status: 64, contains: "rename the file")
        expectOneLineError(try s.run(["-c", "user.name=x", "status"], in: "repo"), status: 64, contains: "mrepo config NAME VALUE")
        expectOneLineError(try s.run(["help", "NONEXISTENT"]), status: 64, contains: "unknown command 'NONEXISTENT'")
        #expect(try s.run(["help", "log"]).status == 0)
        // A command's own commands: an unknown one is a usage error, and a command of commands
        // without one says which there are (both printed the help with status 0).
        expectOneLineError(try s.run(["help", "worktree", "nosuch"]), status: 64, contains: "unknown worktree command 'nosuch'")
        #expect(try s.run(["help", "worktree", "add"]).status == 0)
        #expect(try s.run(["help", "bisect", "new"]).status == 0, "an alias of a command")
        expectOneLineError(try s.run(["worktree"]), status: 64, contains: "'mrepo worktree' needs a command: add, list, remove, prune")
        expectOneLineError(try s.run(["bisect"]), status: 64, contains: "'mrepo bisect' needs a command: start")
        // Scripts' forms: rev-parse --show-toplevel and --verify (-q: a quiet status 1), reflog show.
        try FileManager.default.createDirectory(atPath: s.path("repo/sub"), withIntermediateDirectories: true)
        let top = try s.ok(["rev-parse", "--show-toplevel"], in: "repo/sub").stdout
        #expect(top.hasSuffix("/repo\n") && FileManager.default.fileExists(atPath: String(top.dropLast()) + "/.mrepo"))
        #expect(try s.ok(["rev-parse", "--verify", "HEAD"], in: "repo").stdout == (try s.ok(["rev-parse", "HEAD"], in: "repo").stdout))
        for revision in ["nosuch", "HEAD~99", "HEAD@{99}", "nosuch@{1}"] {
            let quiet = try s.run(["rev-parse", "--verify", "-q", revision], in: "repo")
            #expect(quiet.status == 1 && quiet.stdout.isEmpty && quiet.stderr.isEmpty, "\(revision): \(quiet.stderr)")
        }
        // The usual check for "has commits" in a new repository.
        try s.ok(["init", "-q", "empty"])
        let unborn = try s.run(["rev-parse", "--verify", "-q", "HEAD"], in: "empty")
        #expect(unborn.status == 1 && unborn.stderr.isEmpty)
        expectOneLineError(try s.run(["rev-parse", "--verify", "HEAD", "HEAD"], in: "repo"), status: 64, contains: "--verify takes exactly one revision")
        #expect(try s.ok(["reflog", "show", "main"], in: "repo").stdout == (try s.ok(["reflog", "main"], in: "repo").stdout))
        #expect(try s.run(["worktree", "--help"]).status == 0)
        expectOneLineError(try s.run(["-C", "repo", "stats"]), status: 64, contains: "did you mean 'status'?")
    }

    @Test func everyCommandTakesJSONOrRejectsIt() throws {
        let s = try family()
        try s.ok(["tag", "-q", "v1"], in: "repo")
        // Each: a command line that succeeds; with --json its standard output must be one JSON document.
        let accepted: [[String]] = [
            ["status"], ["log"], ["show"], ["show", "HEAD:config.json"], ["diff", "main", "math"], ["reflog"], ["rev-parse", "HEAD"],
            ["branch"], ["branch", "tmp"], ["branch", "-m", "tmp", "tmp2"], ["branch", "-d", "tmp2"], ["branch", "--show-current"],
            ["tag"], ["tag", "t2"], ["tag", "-d", "t2"], ["switch", "math"], ["checkout", "main"], ["checkout", "-b", "nb"],
            ["switch", "main"], ["notes", "add", "HEAD", "-m", "n"], ["notes", "show"], ["metric", "add", "HEAD", "acc=1"],
            ["metric", "show"], ["merge", "--list-methods"], ["du"], ["fsck"], ["gc"], ["check", "../family/base"],
            ["export", "HEAD", "../out"], ["init", "../other"], ["stash", "list"], ["reset", "HEAD"],
            ["restore", "config.json"], ["worktree", "list"], ["worktree", "add", "../wt1"], ["worktree", "remove", "../wt1"],
            ["worktree", "prune"], ["bisect", "reset"],
        ]
        for args in accepted {
            let r = try s.run(args + ["--json"], in: "repo")
            #expect(r.status == 0, "\(args): \(r.stderr)")
            #expect((try? s.json(r)) != nil, "mrepo \(args.joined(separator: " ")) --json printed no JSON: \(r.stdout)")
        }
        // Commands without --json reject it as a usage error, as JSON.
        for args in [["synth", "x", "--size", "tiny"], ["merge", "--help-method", "ties"]] {
            let r = try s.run(args + ["--json"], in: "repo")
            #expect(r.status == 64, "\(args): \(r.stderr)")
            let err = try JSONSerialization.jsonObject(with: Data(r.stderr.utf8)) as? [String: Any]
            #expect(err?["code"] as? Int == 64 && (err?["error"] as? String)?.isEmpty == false, "\(r.stderr)")
        }
        // A runtime error with --json is a JSON object on standard error.
        let bad = try s.run(["show", "nowhere", "--json"], in: "repo")
        #expect(bad.status == 2 && bad.stdout.isEmpty)
        let err = try JSONSerialization.jsonObject(with: Data(bad.stderr.utf8)) as? [String: Any]
        #expect(err?["code"] as? Int == 2 && (err?["error"] as? String)?.contains("nowhere") == true)
    }

    // MARK: - Revisions

    @Test func revisionsOfTheReflogOrigHeadPeelAndPath() throws {
        let s = try family()
        let main = try revParse(s, "main"), math = try revParse(s, "math"), code = try revParse(s, "code")
        #expect(main.count == 64)
        // HEAD moved main → code → main (the family's last switches).
        #expect(try revParse(s, "HEAD@{0}") == main)
        #expect(try revParse(s, "HEAD@{1}") == code)
        #expect(try revParse(s, "math@{1}") == main)
        // A branch deleted and made again keeps its log; the deletion's entry names no commit, and
        // says so (it had said the log had fewer entries than 'reflog' lists).
        try s.ok(["branch", "-q", "again", "math"], in: "repo")
        try s.ok(["branch", "-q", "-D", "again"], in: "repo")
        try s.ok(["branch", "-q", "again", "main"], in: "repo")
        expectOneLineError(try s.run(["rev-parse", "again@{1}"], in: "repo"), contains: "again did not exist then (entry 1 of its reflog")
        #expect(try revParse(s, "again@{2}") == math)
        #expect(try revParse(s, "v^{}".replacingOccurrences(of: "v", with: "math")) == math)
        // git's full names (they were unknown revisions).
        try s.ok(["tag", "v1", "code"], in: "repo")
        #expect(try revParse(s, "refs/heads/math") == math && (try revParse(s, "refs/tags/v1~0")) == code)
        expectOneLineError(try s.run(["rev-parse", "refs/tags/math"], in: "repo"), contains: "unknown revision 'refs/tags/math'")
        #expect(try revParse(s, "-") == code)
        #expect(try s.ok(["rev-parse", "--abbrev-ref", "-"], in: "repo").stdout == "code\n")
        try s.ok(["switch", "-q", "-"], in: "repo")
        #expect(try s.ok(["branch", "--show-current"], in: "repo").stdout == "code\n")
        try s.ok(["checkout", "-q", "-"], in: "repo")
        #expect(try s.ok(["branch", "--show-current"], in: "repo").stdout == "main\n")
        expectOneLineError(try s.run(["rev-parse", "ORIG_HEAD"], in: "repo"), contains: "ORIG_HEAD is not set")
        try s.ok(["reset", "-q", "--hard", "math"], in: "repo")
        #expect(try revParse(s, "ORIG_HEAD") == main)
        try s.ok(["reset", "-q", "--hard", "ORIG_HEAD"], in: "repo")
        #expect(try revParse(s, "HEAD") == main)

        // REV:path in show, diff and export.
        let config = try s.ok(["show", "math:config.json"], in: "repo").stdout
        #expect(config == String(decoding: s.read("family/math/config.json") ?? Data(), as: UTF8.self))
        let tensors = try s.ok(["show", "math:model.safetensors"], in: "repo").stdout
        #expect(tensors.contains("embeddings.word_embeddings.weight"))
        expectOneLineError(try s.run(["show", "math:nothing.bin"], in: "repo"), contains: "path 'nothing.bin' does not exist in math")
        try s.ok(["export", "-q", "math:config.json", "../one"], in: "repo")
        #expect(s.files(under: "one") == ["config.json"])
        let d = try s.json(try s.ok(["diff", "main:config.json", "math:config.json", "--json"], in: "repo")) as? [String: Any]
        #expect((d?["tensors"] as? [Any])?.isEmpty == true)
    }

    // MARK: - log

    /// `log --graph` with lines that cross and join: an octopus whose parents' histories
    /// interleave, a merge whose second parent another line already waits for, a branch joining
    /// its parent two columns to its left. Every line runs from its commit to its parent (one
    /// line ended in another branch's column, another stopped short of the base).
    @Test func logGraphKeepsEveryLineToItsParent() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../family/math", "--branch", "a", "-m", "a1"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../family/code", "--branch", "b", "-m", "b1"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../family/chat", "--branch", "b", "-m", "b2"], in: "repo")
        try s.ok(["switch", "-q", "a"], in: "repo")
        try s.ok(["merge", "-q", "b", "--method", "linear", "-m", "merge b"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../family/chat", "--branch", "c", "-m", "c1"], in: "repo")
        try s.ok(["switch", "-q", "-c", "oct", "main"], in: "repo")
        try s.ok(["merge", "-q", "a", "b", "c", "-m", "oct"], in: "repo")
        let shape = lines(try s.ok(["log", "--graph", "--oneline"], in: "repo")).map { line in
            String(line.prefix { !$0.isHexDigit }).trimmingCharacters(in: .whitespaces)
        }
        #expect(shape == ["*---.", "|\\ \\ \\", "| | | *", "| | |/", "| |/|", "| * |", "| |\\|", "| | *", "| | *",
                          "| |/", "|/|", "| *", "|/", "*"])

        // A first parent that a column further right waits for stays in the commit's column, and
        // that column comes to it: lines converge, never swap (which drew an X).
        try s.ok(["init", "-q", "r4"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "P"], in: "r4")
        try s.ok(["commit", "-q", "--from", "../family/math", "--branch", "q", "-m", "Q1"], in: "r4")
        try s.ok(["commit", "-q", "--from", "../family/code", "--branch", "q", "-m", "Q2"], in: "r4")
        try s.ok(["commit", "-q", "--from", "../family/chat", "--branch", "a", "-m", "T1"], in: "r4")
        try s.ok(["commit", "-q", "--from", "../family/math", "--branch", "b", "-m", "T2"], in: "r4")
        try s.ok(["switch", "-q", "a"], in: "r4")
        try s.ok(["merge", "-q", "q", "b", "-m", "M", "--method", "linear"], in: "r4")
        let converging = lines(try s.ok(["log", "--graph", "--oneline"], in: "r4")).map { line in
            String(line.prefix { !$0.isHexDigit }).trimmingCharacters(in: .whitespaces)
        }
        #expect(converging == ["*-.", "|\\ \\", "| | *", "* | |", "| |/", "|/|", "| *", "| *", "|/", "*"])
    }

    @Test func logFormsGitUsersType() throws {
        let s = try family()
        try s.ok(["merge", "-q", "math", "code", "-m", "soup"], in: "repo")
        #expect(lines(try s.ok(["log", "-1", "--oneline"], in: "repo")).count == 1)
        // show decorates as log does (it said "(main)").
        #expect(lines(try s.ok(["show"], in: "repo")).first?.hasSuffix(" (HEAD -> main)") == true)
        #expect(lines(try s.ok(["log", "-n2", "--oneline"], in: "repo")).count == 2)
        #expect(lines(try s.ok(["log", "-n", "3", "--oneline"], in: "repo")).count == 3)
        #expect(lines(try s.ok(["log", "--oneline", "--first-parent"], in: "repo")).count == 2)
        let reversed = lines(try s.ok(["log", "--oneline", "--reverse"], in: "repo"))
        #expect(reversed.first?.hasSuffix(" base") == true && reversed.last?.contains("soup") == true)
        // An octopus merge (main was the merge base: three parents) drawn in the graph.
        let graph = try s.ok(["log", "--graph", "--oneline", "--all"], in: "repo").stdout
        // Drawn as git draws it: the parents spread along the merge's row, each line one column per row.
        let shape = lines(try s.ok(["log", "--graph", "--oneline", "--all"], in: "repo")).map { line in
            String(line.prefix { !$0.isHexDigit }).trimmingCharacters(in: .whitespaces)
        }
        #expect(shape == ["*-.", "|\\ \\", "| | *", "| |/", "|/|", "| *", "|/", "*"], "\(graph)")
        #expect(lines(try s.ok(["log", "--graph", "--oneline"], in: "repo")).filter { $0.contains("*") }.count == 4)
        let format = try s.ok(["log", "-1", "--format=%h|%an|%ae|%s|%P", "math"], in: "repo").stdout
        #expect(format.hasPrefix(String(try revParse(s, "math").prefix(12)) + "|Test User|test@example.com|math fine-tune|"))
        #expect(try s.ok(["log", "-1", "--pretty=format:%H", "math"], in: "repo").stdout == (try revParse(s, "math")) + "\n")
        expectOneLineError(try s.run(["log", "--format=nonsense"], in: "repo"), status: 64, contains: "--format 'nonsense'")
        #expect(lines(try s.ok(["log", "--oneline", "--grep", "FINE-TUNE"], in: "repo")).count == 2)
        #expect(lines(try s.ok(["log", "--oneline", "--author", "nobody"], in: "repo")).isEmpty)
        #expect(lines(try s.ok(["log", "--oneline", "--since", "1 hour ago"], in: "repo")).count == 4)
        #expect(lines(try s.ok(["log", "--oneline", "--until", "2000-01-01"], in: "repo")).isEmpty)
        #expect(lines(try s.ok(["log", "--oneline", "main..math"], in: "repo")).isEmpty)
        // A path without -- (it names no revision), as git takes it.
        let recipeLog = lines(try s.ok(["log", "--oneline", "merge_recipe.yml"], in: "repo"))
        #expect(recipeLog.count == 1 && recipeLog.first?.contains("soup") == true, "\(recipeLog)")
        #expect(recipeLog == lines(try s.ok(["log", "--oneline", "--", "merge_recipe.yml"], in: "repo")))
        expectOneLineError(try s.run(["log", "no-such-thing"], in: "repo"), contains: "unknown revision 'no-such-thing'")
        // From a subfolder, a path is the subfolder's, as git reads it.
        try FileManager.default.createDirectory(atPath: s.path("repo/sub"), withIntermediateDirectories: true)
        #expect(lines(try s.ok(["log", "--oneline", "../merge_recipe.yml"], in: "repo/sub")) == recipeLog)
        expectOneLineError(try s.run(["log", "merge_recipe.yml"], in: "repo/sub"), contains: "unknown revision")
        #expect(lines(try s.ok(["log", "--oneline", "math..code"], in: "repo")).count == 1)
        #expect(lines(try s.ok(["log", "--oneline", "math...code"], in: "repo")).count == 2)
        // Provenance: the commits that changed a tensor, and a file.
        let tensor = lines(try s.ok(["log", "--oneline", "math", "--", "encoder.layer.0.*"], in: "repo"))
        #expect(tensor.count == 2 && tensor[0].contains("math fine-tune"))
        let file = lines(try s.ok(["log", "--oneline", "--", "config.json"], in: "repo"))
        // An absolute path is a path: the same commits, and refused outside the working tree (it listed nothing, exit 0).
        #expect(lines(try s.ok(["log", "--oneline", "--", s.path("repo/config.json")], in: "repo")) == file)
        expectOneLineError(try s.run(["log", "--", "/etc/passwd"], in: "repo"), contains: "is outside the working tree")
        #expect(file.count == 1 && file[0].hasSuffix(" base"))
        let stat = try s.ok(["log", "-1", "--stat", "math"], in: "repo").stdout
        #expect(stat.contains("model.safetensors |") && stat.contains("tensors") && stat.contains("stored"))
        let patch = try s.ok(["log", "-1", "-p", "math"], in: "repo").stdout
        #expect(patch.contains("‖Δ‖") && patch.contains("changed,"))
        // A negative count is no limit, as in git, however it is spelled (--max-count=-1 crashed).
        let all = lines(try s.ok(["log", "--oneline", "math"], in: "repo"))
        for spelling in [["--max-count=-1"], ["-n", "-1"], ["--max-count", "-3"], ["-n=-1"]] {
            #expect(lines(try s.ok(["log", "--oneline"] + spelling + ["math"], in: "repo")) == all, "\(spelling)")
        }
        #expect(lines(try s.ok(["log", "--oneline", "-1", "math"], in: "repo")).count == 1)
        let metric = lines(try s.ok(["log", "--oneline", "--metric", "eval_loss", "math"], in: "repo"))
        #expect(metric[0].contains(" eval_loss=1.9 ") && metric[1].contains("eval_loss=-"), "\(metric)")
        // Without --oneline the Metrics line lists the named metrics (it ignored --metric).
        let full = lines(try s.ok(["log", "--metric", "eval_loss", "math"], in: "repo")).filter { $0.hasPrefix("Metrics: ") }
        #expect(full == ["Metrics: eval_loss=1.9", "Metrics: eval_loss=-"], "\(full)")
    }

    // MARK: - diff

    @Test func diffExitCodesStatAndFilters() throws {
        let s = try family()
        let quiet = try s.run(["diff", "--quiet", "main", "math"], in: "repo")
        #expect(quiet.status == 1 && quiet.stdout.isEmpty && quiet.stderr.isEmpty)
        #expect(try s.run(["diff", "-q", "main", "main"], in: "repo").status == 0)
        #expect(try s.run(["diff", "--exit-code", "main", "math"], in: "repo").status == 1)
        #expect(try s.run(["diff", "--exit-code"], in: "repo").status == 0)
        #expect(try s.run(["diff", "main", "math"], in: "repo").status == 0)
        let stat = try s.ok(["diff", "--stat", "main..math"], in: "repo").stdout
        #expect(stat.contains("model.safetensors |") && stat.contains("files changed") || stat.contains("file changed"))
        let filtered = try s.json(try s.ok(["diff", "main", "math", "--json", "--tensor", "*.query.weight"], in: "repo")) as? [String: Any]
        let names = (filtered?["tensors"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(!names.isEmpty && names.allSatisfy { $0.hasSuffix(".query.weight") })
        let onlyConfig = try s.json(try s.ok(["diff", "main", "math", "--json", "--", "config.json"], in: "repo")) as? [String: Any]
        #expect((onlyConfig?["tensors"] as? [Any])?.isEmpty == true)
        #expect(try s.run(["diff", "--quiet", "main", "math", "--", "config.json"], in: "repo").status == 0)
    }

    // MARK: - Refs

    /// `branch -c/-C [OLD] NEW` copies a branch as git does (its commit, reflog and upstream);
    /// `-C` after the command name had been taken as "run in the folder OLD" and made NEW at HEAD.
    @Test func branchCopies() throws {
        let s = try family()
        let math = try s.ok(["rev-parse", "math"], in: "repo").stdout
        try FileManager.default.createDirectory(atPath: s.path("repo/math"), withIntermediateDirectories: true)
        try s.ok(["branch", "-q", "-c", "math", "copy"], in: "repo")
        #expect(try s.ok(["rev-parse", "copy"], in: "repo").stdout == math)
        let reflog = try s.ok(["reflog", "copy"], in: "repo").stdout
        #expect(reflog.contains("branch: copied math to copy") && reflog.contains("math fine-tune"), "\(reflog)")
        expectOneLineError(try s.run(["branch", "-c", "math", "copy"], in: "repo"), contains: "'copy' already exists")
        try s.ok(["branch", "-q", "-C", "main", "copy"], in: "repo")
        #expect(try s.ok(["rev-parse", "copy"], in: "repo").stdout == (try s.ok(["rev-parse", "main"], in: "repo").stdout))
        // The current branch when only the new name is given; never over a checked-out branch.
        try s.ok(["branch", "-q", "-c", "here"], in: "repo")
        #expect(try s.ok(["rev-parse", "here"], in: "repo").stdout == (try s.ok(["rev-parse", "HEAD"], in: "repo").stdout))
        expectOneLineError(try s.run(["branch", "-C", "math", "main"], in: "repo"), contains: "checked out")
        #expect(try s.ok(["rev-parse", "main"], in: "repo").stdout != math)
    }

    @Test func branchAndTagFormsSwitchDashAndCheckoutB() throws {
        let s = try family()
        try s.ok(["branch", "-q", "-m", "math", "maths"], in: "repo")
        let reflog = try s.ok(["reflog", "maths"], in: "repo").stdout
        #expect(reflog.contains("branch: renamed math to maths") && reflog.contains("math fine-tune"))
        expectOneLineError(try s.run(["branch", "-m", "maths", "code"], in: "repo"), contains: "already exists")
        try s.ok(["branch", "-q", "-M", "maths", "code"], in: "repo")
        #expect(try s.ok(["log", "-1", "--format=%s", "code"], in: "repo").stdout == "math fine-tune\n")
        try s.ok(["branch", "-q", "-f", "code", "main"], in: "repo")
        #expect(try revParse(s, "code") == revParse(s, "main"))
        #expect(try s.ok(["branch", "-v"], in: "repo").stdout.contains("* main"))
        try s.ok(["branch", "-q", "-m", "trunk"], in: "repo")
        #expect(try s.ok(["branch", "--show-current"], in: "repo").stdout == "trunk\n")
        try s.ok(["tag", "-q", "-a", "v1", "-m", "first release"], in: "repo")
        try s.ok(["tag", "-q", "v2"], in: "repo")
        try s.ok(["tag", "-q", "w1"], in: "repo")
        expectOneLineError(try s.run(["tag", "-a", "v3"], in: "repo"), status: 64, contains: "-a needs a message")
        #expect(try s.ok(["tag", "-l", "v*"], in: "repo").stdout.split(separator: "\n").map { String($0.prefix(2)) } == ["v1", "v2"])
        #expect(try s.ok(["tag"], in: "repo").stdout.contains("first release"))
        expectOneLineError(try s.run(["tag", "v2", "HEAD"], in: "repo"), contains: "already exists")
        // -d takes several names, as git's: all are deleted, or none when one does not exist.
        expectOneLineError(try s.run(["tag", "-d", "w1", "nosuch"], in: "repo"), contains: "no tag named 'nosuch'")
        expectOneLineError(try s.run(["tag", "-d", "trunk"], in: "repo"), contains: "'trunk' is a branch, not a tag")
        #expect((try s.json(try s.ok(["tag", "--json"], in: "repo")) as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["v1", "v2", "w1"])
        try s.ok(["tag", "-q", "w2"], in: "repo")
        let deleted = try s.json(try s.ok(["tag", "-d", "w1", "w2", "--json"], in: "repo")) as? [[String: Any]]
        #expect(deleted?.compactMap { $0["deleted"] as? String } == ["w1", "w2"])
        #expect((try s.json(try s.ok(["tag", "--json"], in: "repo")) as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["v1", "v2"])
        try s.ok(["branch", "-q", "x1"], in: "repo")
        try s.ok(["branch", "-q", "x2"], in: "repo")
        #expect(try s.ok(["branch", "-d", "x1", "x2"], in: "repo").stdout.split(separator: "\n").count == 2)
        expectOneLineError(try s.run(["branch", "x3", "main", "extra"], in: "repo"), status: 64, contains: "only -d and -D take more")
        // A name that reads as a commit id is refused: it would stand for a commit it is not.
        let hex40 = String(try revParse(s, "HEAD").prefix(40))
        expectOneLineError(try s.run(["tag", String(repeating: "ab", count: 20)], in: "repo"), contains: "must not look like a commit id")
        expectOneLineError(try s.run(["branch", hex40, "code"], in: "repo"), contains: "must not look like a commit id")
        try s.ok(["checkout", "-q", "-b", "feature", "HEAD"], in: "repo")
        try s.ok(["commit", "-q", "--allow-empty", "-m", "on feature"], in: "repo")
        try s.ok(["tag", "-q", "-f", "v2"], in: "repo")
        #expect(try revParse(s, "v2") == revParse(s, "feature"))
        try s.ok(["switch", "-q", "-"], in: "repo")
        #expect(try s.ok(["branch", "--show-current"], in: "repo").stdout == "trunk\n")
    }

    // MARK: - History editing

    /// With no author set anywhere and no USER or LOGNAME (cron, `env -i`), the author is the
    /// account's login name, as the guide says, not "unknown".
    @Test func theAuthorFallsBackToTheAccountsName() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        let account = try #require(getpwuid(getuid()).flatMap { $0.pointee.pw_name.map { String(cString: $0) } })
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo",
                 environment: ["MREPO_AUTHOR": "", "USER": "", "LOGNAME": "", "HOME": s.root, "XDG_CONFIG_HOME": s.root, "GIT_CONFIG_NOSYSTEM": "1"])
        let log = try #require(try s.json(try s.ok(["log", "--json", "-n", "1"], in: "repo")) as? [[String: Any]])
        #expect((log[0]["author"] as? String)?.hasPrefix("\(account) <\(account)@") == true, "\(log[0]["author"] ?? "")")
    }

    /// `restore .` writes only what differs: a file the stat cache shows as the source has it is
    /// left alone (its inode, and so its hard links, kept), as git's restore leaves it.
    @Test func restoreLeavesUnchangedFilesAlone() throws {
        let s = try family()
        try s.ok(["status", "-s"], in: "repo")
        func inode(_ path: String) throws -> UInt64 {
            try #require(FileManager.default.attributesOfItem(atPath: s.path(path))[.systemFileNumber] as? UInt64)
        }
        let before = try inode("repo/model.safetensors")
        try Data("{}".utf8).write(to: URL(fileURLWithPath: s.path("repo/config.json")))
        let r = try #require(try s.json(try s.ok(["restore", "--json", "."], in: "repo")) as? [String: Any])
        #expect(r["files"] as? [String] == ["config.json"])
        #expect((r["unchanged"] as? [String])?.contains("model.safetensors") == true, "\(r)")
        #expect(try inode("repo/model.safetensors") == before)
        #expect(s.read("repo/config.json") == s.read("family/base/config.json"))
        // What restore and switch wrote is known to be as written: not rewritten by the next
        // restore (it was, until a status ran).
        let config = try inode("repo/config.json")
        let again = try #require(try s.json(try s.ok(["restore", "--json", "."], in: "repo")) as? [String: Any])
        #expect(again["files"] as? [String] == [], "\(again)")
        #expect(try inode("repo/config.json") == config)
        try s.ok(["switch", "-q", "math"], in: "repo")
        let switched = try inode("repo/model.safetensors")
        let afterSwitch = try #require(try s.json(try s.ok(["restore", "--json", "."], in: "repo")) as? [String: Any])
        #expect(afterSwitch["files"] as? [String] == [], "\(afterSwitch)")
        #expect(try inode("repo/model.safetensors") == switched)
    }

    /// restore puts a file back where an empty folder stands (it failed with "rename failed: Is a
    /// directory"), refuses in one line where the folder holds files, and a file the source lacks
    /// goes with the folders it leaves empty (git's no-overlay restore).
    @Test func restoreMakesRoomAndRemovesWhatTheSourceLacks() throws {
        let s = try family()
        try FileManager.default.removeItem(atPath: s.path("repo/config.json"))
        try FileManager.default.createDirectory(atPath: s.path("repo/config.json"), withIntermediateDirectories: true)
        try s.ok(["restore", "-q", "config.json"], in: "repo")
        #expect(s.read("repo/config.json") == s.read("family/base/config.json"))
        try FileManager.default.removeItem(atPath: s.path("repo/config.json"))
        try FileManager.default.createDirectory(atPath: s.path("repo/config.json"), withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: s.path("repo/config.json/notes.txt")))
        expectOneLineError(try s.run(["restore", "config.json"], in: "repo"), contains: "config.json: is a folder where the checkout writes a file, and it holds files mrepo does not track (config.json/notes.txt)")
        #expect(s.read("repo/config.json/notes.txt") == Data("mine".utf8))
        try FileManager.default.removeItem(atPath: s.path("repo/config.json"))
        try s.ok(["restore", "-q", "config.json"], in: "repo")
        try FileManager.default.createDirectory(atPath: s.path("repo/sub/deeper"), withIntermediateDirectories: true)
        try Data("a".utf8).write(to: URL(fileURLWithPath: s.path("repo/sub/deeper/a.txt")))
        try s.ok(["commit", "-q", "-m", "sub"], in: "repo")
        try s.ok(["restore", "-q", "--source", "HEAD~1", "sub/deeper/a.txt"], in: "repo")
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/sub")), "the folders it left empty went too")
        // Never removes through a linked folder: the files outside the working tree stay.
        try FileManager.default.createDirectory(atPath: s.path("outside/sub/deeper"), withIntermediateDirectories: true)
        try Data("a".utf8).write(to: URL(fileURLWithPath: s.path("outside/sub/deeper/a.txt")))
        try FileManager.default.createSymbolicLink(atPath: s.path("repo/sub"), withDestinationPath: s.path("outside/sub"))
        expectOneLineError(try s.run(["restore", "--source", "HEAD~1", "sub"], in: "repo"), contains: "is a symbolic link; refusing to write through it")
        #expect(s.read("outside/sub/deeper/a.txt") == Data("a".utf8))
        try FileManager.default.removeItem(atPath: s.path("repo/sub"))
        // The folder restore runs in stays when the restore empties it.
        try FileManager.default.createDirectory(atPath: s.path("repo/only"), withIntermediateDirectories: true)
        try Data("o".utf8).write(to: URL(fileURLWithPath: s.path("repo/only/o.txt")))
        try s.ok(["commit", "-q", "-m", "only"], in: "repo")
        try s.ok(["restore", "-q", "--source", "HEAD~1", "."], in: "repo/only")
        #expect(FileManager.default.fileExists(atPath: s.path("repo/only")) && !FileManager.default.fileExists(atPath: s.path("repo/only/o.txt")))
        // git's `reset PATH` (unstage) points to restore: there is no index.
        expectOneLineError(try s.run(["reset", "config.json"], in: "repo"), contains: "that is a file, and reset takes no paths")
        expectOneLineError(try s.run(["reset", "HEAD", "--", "config.json"], in: "repo"), status: 64,
                           contains: "'mrepo restore --source HEAD config.json' puts files back")
    }

    @Test func amendResetRestoreAndStash() throws {
        let s = try family()
        let base = try revParse(s, "HEAD")
        try s.ok(["switch", "-q", "math"], in: "repo")
        let math = try revParse(s, "HEAD")
        try s.ok(["commit", "-q", "--amend", "-m", "math, amended", "--metric", "acc=0.5"], in: "repo")
        let amended = try s.json(try s.ok(["show", "--json"], in: "repo")) as? [String: Any]
        #expect(amended?["parents"] as? [String] == [base] && amended?["message"] as? String == "math, amended")
        #expect((amended?["metrics"] as? [String: Double]) == ["eval_loss": 1.9, "acc": 0.5])
        #expect(try revParse(s, "ORIG_HEAD") == math)
        try s.ok(["reset", "-q", "--hard", "ORIG_HEAD"], in: "repo")
        #expect(try revParse(s, "HEAD") == math)
        // Metrics added after the fact are HEAD's metrics too: an amend keeps them (it had brought
        // back the recorded value they replaced, and dropped the others).
        try s.ok(["metric", "add", "eval_loss=1.7", "f1=0.8"], in: "repo")
        try s.ok(["commit", "-q", "--amend", "-m", "math, amended again"], in: "repo")
        let again = try s.json(try s.ok(["show", "--json"], in: "repo")) as? [String: Any]
        #expect((again?["metrics"] as? [String: Double]) == ["eval_loss": 1.7, "f1": 0.8])
        try s.ok(["reset", "-q", "--hard", "ORIG_HEAD"], in: "repo")
        #expect(try revParse(s, "HEAD") == math)

        try s.ok(["reset", "-q", "--soft", "HEAD~1"], in: "repo")
        #expect(try revParse(s, "HEAD") == base)
        #expect(try s.ok(["status"], in: "repo").stdout.contains("modified"))
        try s.ok(["reset", "-q", "--hard", "ORIG_HEAD"], in: "repo")
        #expect(try s.ok(["status"], in: "repo").stdout.contains("nothing to commit"))
        // Unlike git's, and as its help says: an untracked file where the target has one stops it.
        try s.ok(["reset", "-q", "--hard", "main"], in: "repo")
        try Data("MY WORK".utf8).write(to: URL(fileURLWithPath: s.path("repo/model.safetensors.tmp")))
        try FileManager.default.removeItem(atPath: s.path("repo/model.safetensors"))
        try s.ok(["commit", "-q", "-m", "no model"], in: "repo")
        try FileManager.default.moveItem(atPath: s.path("repo/model.safetensors.tmp"), toPath: s.path("repo/model.safetensors"))
        expectOneLineError(try s.run(["reset", "--hard", "ORIG_HEAD"], in: "repo"),
                           contains: "reset --hard would overwrite untracked files in model.safetensors, which the target commit tracks")
        #expect(s.read("repo/model.safetensors") == Data("MY WORK".utf8))
        try FileManager.default.removeItem(atPath: s.path("repo/model.safetensors"))
        // Where the target has a folder, too (the file was deleted to make room for it).
        try FileManager.default.createDirectory(atPath: s.path("repo/sub"), withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: s.path("repo/sub/kept.txt")))
        try s.ok(["commit", "-q", "-m", "sub"], in: "repo")
        try FileManager.default.removeItem(atPath: s.path("repo/sub"))
        try s.ok(["commit", "-q", "-m", "no sub"], in: "repo")
        try Data("MINE".utf8).write(to: URL(fileURLWithPath: s.path("repo/sub")))
        expectOneLineError(try s.run(["reset", "--hard", "HEAD~1"], in: "repo"), contains: "would overwrite untracked files in sub")
        #expect(s.read("repo/sub") == Data("MINE".utf8))
        try FileManager.default.removeItem(atPath: s.path("repo/sub"))
        try s.ok(["reset", "-q", "--hard", "ORIG_HEAD"], in: "repo")

        // restore: a whole file, then single tensors, from another revision.
        try Data("{}".utf8).write(to: URL(fileURLWithPath: s.path("repo/config.json")))
        try s.ok(["restore", "-q", "config.json"], in: "repo")
        #expect(s.read("repo/config.json") == s.read("family/math/config.json"))
        let q = "encoder.layer.0.attention.self.query.weight", k = "encoder.layer.0.attention.self.key.weight"
        // An untracked link to nothing elsewhere does not stop it (it did: the scan refused every link).
        try FileManager.default.createSymbolicLink(atPath: s.path("repo/dangling"), withDestinationPath: "/nonexistent")
        try s.ok(["restore", "-q", "--source", "main", "--tensor", "encoder.layer.0.attention.self.query.*"], in: "repo")
        try FileManager.default.removeItem(atPath: s.path("repo/dangling"))
        #expect(try s.floats("repo/model.safetensors", q) == s.floats("family/base/model.safetensors", q))
        #expect(try s.floats("repo/model.safetensors", q) != s.floats("family/math/model.safetensors", q))
        #expect(try s.floats("repo/model.safetensors", k) == s.floats("family/math/model.safetensors", k))
        let diff = try s.json(try s.ok(["diff", "--json"], in: "repo")) as? [String: Any]
        let changed = (diff?["tensors"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(!changed.isEmpty && changed.allSatisfy { $0.hasPrefix("encoder.layer.0.attention.self.query.") }, "\(changed)")

        // stash: aside, listed, back.
        try s.ok(["stash", "-q"], in: "repo")
        #expect(try s.ok(["status"], in: "repo").stdout.contains("nothing to commit"))
        #expect(try s.ok(["stash", "list"], in: "repo").stdout.hasPrefix("stash@{0}: WIP on math: "), "as git lists it")
        try s.ok(["stash", "pop", "-q"], in: "repo")
        #expect(try s.floats("repo/model.safetensors", q) == s.floats("family/base/model.safetensors", q))
        #expect(try s.ok(["stash", "list"], in: "repo").stdout.isEmpty)
        expectOneLineError(try s.run(["stash", "pop"], in: "repo"), contains: "no stash entries")
    }

    /// `--stat` lines keep a name with a combining accent whole (NFD `café.txt`: a padding counted
    /// in UTF-16 units cut its last character), and pad it to the other names' width.
    @Test func statLinesKeepNamesWithCombiningAccentsWhole() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: [])
        let nfd = "cafe\u{301}.txt"
        try Data("b".utf8).write(to: URL(fileURLWithPath: s.path("repo/" + nfd)))
        try Data("c".utf8).write(to: URL(fileURLWithPath: s.path("repo/notes.txt")))
        try s.ok(["commit", "-q", "-m", "nfd"], in: "repo")
        for args in [["show", "--stat"], ["log", "--stat", "-n", "1"], ["diff", "HEAD~1", "HEAD", "--stat"]] {
            let out = try s.ok(args, in: "repo").stdout
            let line = out.split(separator: "\n").map(String.init).first { $0.contains("caf") } ?? ""
            // Eight characters, padded to notes.txt's nine.
            #expect(line.hasPrefix(" " + nfd + "  | "), "\(args): \(out)")
            #expect(out.contains(" notes.txt | "), "\(out)")
        }
    }

    /// git's spellings that scripts use: `switch --detach` and `checkout --detach` (a branch's
    /// commit, HEAD detached), `commit --no-verify` (the pre-commit hook skipped), `reflog stash`
    /// with no stash yet; and errors that name the real cause for a file given as a folder.
    @Test func detachNoVerifyAndFileForFolderErrors() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math"])
        try s.ok(["reflog", "stash"], in: "repo")
        try s.ok(["switch", "-q", "--detach", "math"], in: "repo")
        #expect(try s.ok(["status"], in: "repo").stdout.contains("HEAD detached at"))
        // branch lists the detached HEAD first, as git's.
        let short = String(try s.ok(["rev-parse", "math"], in: "repo").stdout.prefix(12))
        #expect(try s.ok(["branch"], in: "repo").stdout.hasPrefix("* (HEAD detached at \(short))\n"))
        #expect(s.sameFiles("repo", "family/math"))
        try s.ok(["checkout", "-q", "--detach", "main"], in: "repo")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == (try s.ok(["rev-parse", "main"], in: "repo").stdout))
        #expect(try s.ok(["status"], in: "repo").stdout.contains("HEAD detached at"))
        // Leaving a detached HEAD whose commits no branch reaches warns, as git's (on standard error).
        #expect(!(try s.ok(["switch", "-q", "main"], in: "repo").stderr.contains("behind")), "main's commit is on a branch")
        try s.ok(["switch", "-q", "--detach", "main"], in: "repo")
        try s.ok(["commit", "-q", "--allow-empty", "-m", "experiment"], in: "repo")
        let experiment = String(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout.prefix(12))
        let left = try s.ok(["checkout", "-q", "main"], in: "repo")
        #expect(left.stderr.contains("leaving 1 commit behind that no branch or tag reaches (\(experiment) experiment)"), "\(left.stderr)")
        #expect(left.stdout.isEmpty)
        expectOneLineError(try s.run(["switch", "--detach", "-c", "x"], in: "repo"), status: 64, contains: "--detach takes only a revision")

        let hook = s.path("repo/.mrepo/hooks/pre-commit")
        try "#!/bin/sh\nexit 1\n".write(toFile: hook, atomically: true, encoding: .utf8)
        chmod(hook, 0o755)
        try Data("notes".utf8).write(to: URL(fileURLWithPath: s.path("repo/notes.txt")))
        expectOneLineError(try s.run(["commit", "-m", "hooked"], in: "repo"), contains: "pre-commit hook rejected")
        try s.ok(["commit", "-q", "--no-verify", "-m", "unhooked"], in: "repo")
        #expect(try s.ok(["log", "--oneline", "-n", "1"], in: "repo").stdout.contains("unhooked"))
        // A hook without its execute bit is skipped, with git's hint (it was skipped silently).
        chmod(hook, 0o644)
        try Data("more notes".utf8).write(to: URL(fileURLWithPath: s.path("repo/notes.txt")))
        let skipped = try s.ok(["commit", "-q", "-m", "not hooked"], in: "repo")
        #expect(skipped.stderr.contains("hint: the pre-commit hook was ignored because it is not executable (chmod +x "), "\(skipped.stderr)")

        expectOneLineError(try s.run(["commit", "--from", "../family/math/model.safetensors", "-m", "x"], in: "repo"),
                           contains: "not a directory (--from takes the checkpoint's folder)")
        try Data("x".utf8).write(to: URL(fileURLWithPath: s.path("a-file")))
        expectOneLineError(try s.run(["export", "HEAD", "../a-file"], in: "repo"), contains: "a file is in the way")
    }

    /// `stash pop` with local changes, as git: changes to files the stash does not touch (an edited
    /// config, an untracked eval file) are kept; one to a file it changes stops it, naming that file,
    /// with nothing written and the entry kept.
    @Test func stashPopKeepsUnrelatedLocalChanges() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: [])
        try FileManager.default.removeItem(atPath: s.path("repo/model.safetensors"))
        try FileManager.default.copyItem(atPath: s.path("family/math/model.safetensors"), toPath: s.path("repo/model.safetensors"))
        try s.ok(["stash", "-q"], in: "repo")
        try Data("{\"accuracy\": 0.9}".utf8).write(to: URL(fileURLWithPath: s.path("repo/eval_results.json")))
        try Data("{\"edited\": true}".utf8).write(to: URL(fileURLWithPath: s.path("repo/config.json")))
        try s.ok(["stash", "pop", "-q"], in: "repo")
        #expect(s.read("repo/model.safetensors") == s.read("family/math/model.safetensors"))
        #expect(s.read("repo/config.json") == Data("{\"edited\": true}".utf8))
        #expect(s.read("repo/eval_results.json") == Data("{\"accuracy\": 0.9}".utf8))
        #expect(try s.ok(["stash", "list"], in: "repo").stdout.isEmpty)

        try s.ok(["stash", "-q"], in: "repo")  // the model, the config and the eval file
        try Data("{\"edited\": 2}".utf8).write(to: URL(fileURLWithPath: s.path("repo/config.json")))
        let refused = try s.run(["stash", "pop"], in: "repo")
        expectOneLineError(refused, contains: "stash pop would overwrite uncommitted changes in config.json")
        #expect(!refused.stderr.contains("model.safetensors"))
        #expect(s.read("repo/config.json") == Data("{\"edited\": 2}".utf8))
        #expect(s.read("repo/model.safetensors") == s.read("family/base/model.safetensors"), "nothing written")
        #expect(try s.ok(["stash", "list"], in: "repo").stdout.split(separator: "\n").count == 1, "the entry is kept")
    }

    /// `diff REV PATH` where the path climbs out of a subfolder (`../model.safetensors`): a path,
    /// as git reads it, not a range A..B given as two arguments (a usage error, status 64).
    @Test func diffTakesAParentRelativePathBesideARevision() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: [])
        try FileManager.default.createDirectory(atPath: s.path("repo/sub"), withIntermediateDirectories: true)
        try Data("{\"edited\": true}".utf8).write(to: URL(fileURLWithPath: s.path("repo/config.json")))
        let r = try s.ok(["diff", "HEAD", "../config.json"], in: "repo/sub")
        #expect(r.stdout.contains("file changed: config.json"))
        #expect(!(try s.ok(["diff", "HEAD", "../model.safetensors"], in: "repo/sub").stdout.contains("config.json")))
        // A path from the folder above that is not there (deleted, or a typo) is a path too: the
        // path's own error, not the range's.
        let missing = try s.run(["diff", "HEAD", "../nothing.json"], in: "repo/sub")
        #expect(!missing.stderr.contains("a range A..B"), "\(missing.stderr)")
        // A real range beside another argument is still refused as such.
        expectOneLineError(try s.run(["diff", "HEAD~1..HEAD", "config.json"], in: "repo"), status: 64, contains: "a range A..B is one argument")
    }

    /// `merge -` merges the previous branch and names it in the message and the record (it wrote
    /// the literal `@{-1}`, which names another branch after the next switch).
    @Test func mergeDashNamesThePreviousBranch() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["code"])
        try s.ok(["switch", "-q", "code"], in: "repo")
        try s.ok(["switch", "-q", "-c", "m2", "main"], in: "repo")
        try s.ok(["merge", "-q", "-", "--method", "linear"], in: "repo")
        #expect(try s.ok(["log", "-1", "--format=%s"], in: "repo").stdout == "Merge code into m2 (linear)\n")
        let shown = try s.ok(["show", "--json"], in: "repo").stdout
        #expect(!shown.contains("@{-1}"), "the record names the branch: \(shown.prefix(400))")
    }

    /// `stash` as git's: untracked files (an optimizer state, say) are neither stashed nor removed
    /// unless -u; nothing to put aside is no failure; `stash apply` keeps the entry and records
    /// nothing in the stash's reflog (it logged the entry as deleted).
    @Test func stashLeavesUntrackedFilesUnlessAsked() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: [])
        let optimizer = Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try optimizer.write(to: URL(fileURLWithPath: s.path("repo/optimizer.pt")))
        let nothing = try s.ok(["stash"], in: "repo")
        #expect(nothing.stdout == "No local changes to save\n")
        #expect(try s.ok(["stash", "--json"], in: "repo").stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "null")
        #expect(s.read("repo/optimizer.pt") == optimizer)
        #expect(try s.ok(["stash", "list"], in: "repo").stdout.isEmpty)
        // A tracked change is stashed; the untracked file stays.
        try Data("{\"edited\": true}".utf8).write(to: URL(fileURLWithPath: s.path("repo/config.json")))
        try s.ok(["stash", "-q"], in: "repo")
        #expect(s.read("repo/optimizer.pt") == optimizer)
        #expect(s.read("repo/config.json") == s.read("family/base/config.json"))
        #expect(try s.ok(["show", "--stat", "stash@{0}"], in: "repo").stdout.contains("optimizer.pt") == false)
        try s.ok(["stash", "apply", "-q"], in: "repo")
        #expect(s.read("repo/config.json") == Data("{\"edited\": true}".utf8))
        #expect(try s.ok(["stash", "list"], in: "repo").stdout.split(separator: "\n").count == 1, "apply keeps the entry")
        #expect(!(try s.ok(["reflog", "stash"], in: "repo").stdout.contains("deleted")))
        try s.ok(["stash", "drop", "-q"], in: "repo")
        try s.ok(["restore", "config.json"], in: "repo")
        // -u: the untracked file goes into the entry and out of the working tree, and comes back.
        try s.ok(["stash", "-q", "-u"], in: "repo")
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/optimizer.pt")))
        try s.ok(["stash", "pop", "-q"], in: "repo")
        #expect(s.read("repo/optimizer.pt") == optimizer)
        expectOneLineError(try s.run(["stash", "pop", "-u"], in: "repo"), status: 64, contains: "-u goes with stash push")
    }

    /// A revert through task arithmetic where HEAD changed a file the reverted commit changed too:
    /// HEAD's version is kept, and a warning says that part of the change is not applied.
    @Test func revertWarnsWhereHeadsVersionOfAFileIsKept() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        for (model, value) in [("math", 1), ("code", 2)] {
            for name in s.files(under: "family/\(model)") {
                try? FileManager.default.removeItem(atPath: s.path("repo/\(name)"))
                try FileManager.default.copyItem(atPath: s.path("family/\(model)/\(name)"), toPath: s.path("repo/\(name)"))
            }
            try "{\"x\": \(value)}\n".write(toFile: s.path("repo/config.json"), atomically: true, encoding: .utf8)
            try s.ok(["commit", "-q", "-m", model], in: "repo")
        }
        let r = try s.ok(["revert", "HEAD~1"], in: "repo")
        #expect(r.stdout.contains("task arithmetic"))
        #expect(r.stderr.contains("config.json was changed both by the reverted commit and since; HEAD's version is kept"))
        #expect(s.read("repo/config.json") == Data("{\"x\": 2}\n".utf8))
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/merge_recipe.yml")), "a revert adds no merge recipe")
        // A change none of which can be applied (HEAD changed the only file it touches) was
        // recorded as an empty commit under the change's message, with exit 0.
        try s.ok(["switch", "-q", "-c", "side", "HEAD~2"], in: "repo")
        try "{\"x\": 9}\n".write(toFile: s.path("repo/config.json"), atomically: true, encoding: .utf8)
        try s.ok(["commit", "-q", "-m", "side config"], in: "repo")
        try s.ok(["switch", "-q", "main"], in: "repo")
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        expectOneLineError(try s.run(["cherry-pick", "side"], in: "repo"),
                           contains: "cherry-pick: nothing of the change could be applied: HEAD has changed the files it touches since")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == head)
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
    }

    /// A revert that stops (HEAD deleted a tensor it changes) says in status that it is a revert,
    /// not a merge of nameless branches.
    @Test func aStoppedRevertSaysSoInStatus() throws {
        let s = try CLISandbox()
        try s.ok(["init", "-q", "repo"])
        try s.writeModel("repo", [("a", [2], [1, 2]), ("b", [2], [3, 4])])
        try s.ok(["commit", "-q", "-m", "base"], in: "repo")
        try s.writeModel("repo", [("a", [2], [1.5, 2.5]), ("b", [2], [3, 4])])
        try s.ok(["commit", "-q", "-m", "change a"], in: "repo")
        try s.writeModel("repo", [("b", [2], [3, 5])])
        try s.ok(["commit", "-q", "-m", "drop a"], in: "repo")
        let stopped = try s.run(["revert", "HEAD~1"], in: "repo")
        #expect(stopped.status == 1, "\(stopped.stdout)\(stopped.stderr)")
        // Its inputs are HEAD and a short id (they were two 64-digit ids).
        let parent = String(try revParse(s, "HEAD~2").prefix(12))
        #expect((stopped.stdout + stopped.stderr).contains("a: deleted by HEAD, changed by \(parent)"), "\(stopped.stdout)\(stopped.stderr)")
        let status = try s.ok(["status"], in: "repo").stdout
        #expect(status.contains("Applying 'Revert \"change a\"' onto HEAD (task_arithmetic: a revert or cherry-pick)"), "\(status)")
        let doc = try #require(try s.json(try s.ok(["status", "--json"], in: "repo")) as? [String: Any])
        let merge = try #require(doc["merge_in_progress"] as? [String: Any])
        #expect(merge["applies_change"] as? Bool == true && merge["subject"] as? String == "Revert \"change a\"")
        // git's spellings end it: --abort, or --continue once settled (they had asked for a revision).
        let head = try revParse(s, "HEAD")
        try s.ok(["revert", "--abort", "-q"], in: "repo")
        #expect(try revParse(s, "HEAD") == head && (try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty))
        expectOneLineError(try s.run(["revert", "--continue"], in: "repo"), contains: "no revert is in progress")
        // Which command stopped is recorded, not read from the message (one that reads like a
        // cherry-pick's made revert --abort refuse).
        #expect(try s.run(["revert", "HEAD~1", "--message", "undo\n\n(cherry picked from commit 1234)"], in: "repo").status == 1)
        #expect(try s.ok(["status"], in: "repo").stdout.contains("Applying"))
        try s.ok(["revert", "--abort", "-q"], in: "repo")
        #expect(try s.run(["revert", "HEAD~1"], in: "repo").status == 1)
        // Not the other operation's (it had aborted a stopped revert as a cherry-pick).
        expectOneLineError(try s.run(["cherry-pick", "--abort"], in: "repo"), contains: "no cherry-pick is in progress (a revert is: 'mrepo revert --abort')")
        try s.ok(["resolve", "-q", "*", "--ours"], in: "repo")
        try s.ok(["revert", "--continue", "-q"], in: "repo")
        #expect(try s.ok(["log", "-n", "1", "--format=%s"], in: "repo").stdout == "Revert \"change a\"\n")
        expectOneLineError(try s.run(["cherry-pick", "--abort"], in: "repo"), contains: "no cherry-pick is in progress")
    }

    /// git's `revert -m N MERGE`: the merge's change against parent N is undone (nothing touched
    /// it since, so byte for byte: the branch holds parent N's model again); without -m a merge
    /// is refused, naming -m (it had suggested a reset, which drops history). `cherry-pick -m 1`
    /// applies the merge's change onto another branch.
    @Test func revertAndCherryPickOfAMergeTakeItsMainline() throws {
        let s = try family()
        try s.ok(["switch", "-q", "math"], in: "repo")
        try s.ok(["merge", "-q", "code", "--method", "ties"], in: "repo")
        let merge = try revParse(s, "HEAD")
        expectOneLineError(try s.run(["revert", "HEAD"], in: "repo"), contains: "it is a merge commit; -m N names the parent whose side is kept")
        expectOneLineError(try s.run(["revert", "-m", "3", "HEAD"], in: "repo"), contains: "-m 3: \(merge.prefix(12)) has 2 parents")
        expectOneLineError(try s.run(["revert", "-m", "1", "HEAD~1"], in: "repo"), contains: "is not a merge commit")
        let r = try #require(try s.json(try s.ok(["revert", "-m", "1", "HEAD", "--json"], in: "repo")) as? [String: Any])
        #expect(r["exact"] as? Bool == true)
        #expect(s.sameFiles("repo", "family/math"), "math's model is back")
        #expect(try s.ok(["log", "-n", "1", "--format=%B"], in: "repo").stdout.contains("reversing changes made to"))
        try s.ok(["switch", "-q", "-c", "pick", "main"], in: "repo")
        let pick = try s.json(try s.ok(["cherry-pick", "-m", "1", merge, "--json"], in: "repo")) as? [String: Any]
        #expect(pick?["commit"] != nil)
        #expect(!s.sameFiles("repo", "family/base"), "the merge's change against math landed on main's model")
    }

    @Test func revertAndCherryPickAsModelOperations() throws {
        let s = try family()
        try s.ok(["switch", "-q", "math"], in: "repo")
        let math = try revParse(s, "HEAD")
        // Nothing after math touched its tensors: the revert gives back base's bytes.
        let r = try s.json(try s.ok(["revert", "HEAD", "--json"], in: "repo")) as? [String: Any]
        #expect(r?["exact"] as? Bool == true)
        try s.ok(["export", "-q", "HEAD", "../reverted"], in: "repo")
        #expect(s.read("reverted/model.safetensors") == s.read("family/base/model.safetensors"))
        #expect(try revParse(s, "ORIG_HEAD") == math)
        try s.ok(["reset", "-q", "--hard", "ORIG_HEAD"], in: "repo")

        // code's change onto math: both changed every tensor since base, so task arithmetic.
        let p = try s.ok(["cherry-pick", "code"], in: "repo")
        #expect(p.stdout.contains("task arithmetic"))
        // The reflog names the command, as for an exact cherry-pick (it said "merge : ...").
        #expect(try s.ok(["reflog", "-n", "1"], in: "repo").stdout.contains("cherry-pick: "))
        let picked = try s.json(try s.ok(["show", "--json"], in: "repo")) as? [String: Any]
        #expect(picked?["parents"] as? [String] == [math])
        #expect((picked?["message"] as? String)?.contains("cherry picked from commit \(try revParse(s, "code"))") == true)
        let w = "encoder.layer.0.attention.self.query.weight"
        let expected = zip(zip(try s.floats("family/math/model.safetensors", w), try s.floats("family/code/model.safetensors", w)),
                           try s.floats("family/base/model.safetensors", w)).map { $0.0 + $0.1 - $1 }
        try s.ok(["export", "-q", "HEAD", "../picked"], in: "repo")
        let got = try s.floats("picked/model.safetensors", w)
        #expect(zip(got, expected).allSatisfy { abs($0 - $1) <= 1e-5 * max(1, abs($1)) })
        // Picking it again would add code's task vector a second time (a scripted retry did): refused,
        // naming the earlier pick, with nothing written; so is a commit HEAD already contains.
        let pickedID = try revParse(s, "HEAD")
        #expect(try revParse(s, "ORIG_HEAD") == math, "the pick set ORIG_HEAD")
        expectOneLineError(try s.run(["cherry-pick", "code"], in: "repo"), contains: "applying it again would add its task vector twice")
        #expect(try revParse(s, "HEAD") == pickedID)
        expectOneLineError(try s.run(["cherry-pick", "HEAD~1"], in: "repo"), contains: "is already in HEAD's history")
        // Reverted since, it may be picked again (as in git).
        try s.ok(["revert", "-q", "HEAD"], in: "repo")
        try s.ok(["cherry-pick", "-q", "code"], in: "repo")
        #expect(try revParse(s, "HEAD") != pickedID)
        try s.ok(["reset", "-q", "--hard", math], in: "repo")
        #expect(try revParse(s, "HEAD") == math)
    }

    // MARK: - Notes and metrics

    @Test func notesAndMetricsAreShownAndFeedMWA() throws {
        let s = try family()
        let before = try revParse(s, "code")
        try s.ok(["notes", "add", "code", "-m", "evaluated on the held-out set"], in: "repo")
        // mwa needs every expert's eval_loss: code has none yet.
        try s.ok(["switch", "-q", "-c", "soup"], in: "repo")
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "mwa"], in: "repo"), contains: "eval_loss")
        try s.ok(["metric", "add", "code", "eval_loss=2.0", "acc=0.61"], in: "repo")
        #expect(try revParse(s, "code") == before)
        let show = try s.ok(["show", "code"], in: "repo").stdout
        #expect(show.contains("eval_loss=2") && show.contains("acc=0.61") && show.contains("evaluated on the held-out set"))
        let log = try s.json(try s.ok(["log", "-1", "code", "--json"], in: "repo")) as? [[String: Any]]
        #expect(log?.first?["notes"] as? [String] == ["evaluated on the held-out set"])
        #expect((log?.first?["metrics"] as? [String: Double])?["eval_loss"] == 2.0)
        try s.ok(["merge", "-q", "math", "code", "--method", "mwa"], in: "repo")
        expectOneLineError(try s.run(["metric", "add", "HEAD", "loss"], in: "repo"), status: 64, contains: "expected name=value")
        // Without a revision, metrics go to HEAD; a name with a space would print ambiguously.
        try s.ok(["metric", "add", "judge=7.5"], in: "repo")
        #expect(try s.ok(["metric", "show"], in: "repo").stdout.contains("judge=7.5\n"))
        expectOneLineError(try s.run(["metric", "add", "HEAD", "eval loss=1"], in: "repo"), status: 64, contains: "expected name=value")
        // Added metrics and notes can be taken back (there was no way); recorded metrics stay.
        try s.ok(["metric", "add", "tmp=1"], in: "repo")
        try s.ok(["metric", "remove", "tmp"], in: "repo")
        #expect(!(try s.ok(["metric", "show"], in: "repo").stdout.contains("tmp=")))
        expectOneLineError(try s.run(["metric", "remove", "tmp", "judge"], in: "repo"), contains: "has no metric 'tmp' added")
        #expect(try s.ok(["metric", "show"], in: "repo").stdout.contains("judge=7.5\n"), "all or none")
        try s.ok(["notes", "add", "-m", "to go"], in: "repo")
        #expect(try s.ok(["notes", "remove"], in: "repo").stdout == "Removed 1 note of \(try revParse(s, "HEAD").prefix(12)).\n")
        expectOneLineError(try s.run(["notes", "remove"], in: "repo"), status: 1, contains: "no note found")
        // A lone metric whose value is no number says so (it said "metric add needs NAME=VALUE").
        expectOneLineError(try s.run(["metric", "add", "acc=notanumber"], in: "repo"), status: 64, contains: "'acc=notanumber': expected name=value with a number")
        // A branch whose name reads as a metric is still the revision.
        try s.ok(["branch", "lr=3e-4", "math"], in: "repo")
        try s.ok(["metric", "add", "lr=3e-4", "acc=0.9"], in: "repo")
        #expect(try s.ok(["metric", "show", "lr=3e-4"], in: "repo").stdout.contains("acc=0.9\n"))
        #expect(!(try s.ok(["metric", "show"], in: "repo").stdout.contains("acc=0.9\n")))
    }

    // MARK: - Where checkpoints come from; shell and docs

    @Test func lfsPointersHuggingFaceCachesCompletionAndManPage() throws {
        let s = try family()
        // A Hugging Face cache snapshot: links into blobs/, read through without --dereference;
        // the .cache/huggingface folder snapshot_download(local_dir=...) writes is left out.
        let fm = FileManager.default
        let hub = s.path("hub/models--org--name")
        try fm.createDirectory(atPath: hub + "/blobs", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: hub + "/snapshots/abc123/.cache/huggingface", withIntermediateDirectories: true)
        for name in ["config.json", "model.safetensors"] {
            try fm.copyItem(atPath: s.path("family/math/" + name), toPath: hub + "/blobs/" + name + ".blob")
            try fm.createSymbolicLink(atPath: hub + "/snapshots/abc123/" + name, withDestinationPath: "../../blobs/" + name + ".blob")
        }
        try Data("x".utf8).write(to: URL(fileURLWithPath: hub + "/snapshots/abc123/.cache/huggingface/download.lock"))
        try s.ok(["switch", "-q", "-c", "hub"], in: "repo")
        try s.ok(["commit", "-q", "--from", hub + "/snapshots/abc123", "-m", "from the hub cache"], in: "repo")
        #expect(s.files(under: "repo") == ["config.json", "model.safetensors"])
        #expect(s.read("repo/model.safetensors") == s.read("family/math/model.safetensors"))
        // A symbolic link elsewhere is still refused.
        try fm.createDirectory(atPath: s.path("links"), withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: s.path("links/config.json"), withDestinationPath: s.path("family/base/config.json"))
        expectOneLineError(try s.run(["commit", "--from", "../links", "-m", "x"], in: "repo"), contains: "is a symbolic link")

        // A Git LFS pointer is named as one.
        try fm.createDirectory(atPath: s.path("lfs"), withIntermediateDirectories: true)
        try Data("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 42\n".utf8).write(to: URL(fileURLWithPath: s.path("lfs/model.safetensors")))
        expectOneLineError(try s.run(["commit", "--from", "../lfs", "-m", "x"], in: "repo"),
                           contains: "model.safetensors is a Git LFS pointer, not the checkpoint; run 'git lfs pull' first")

        // Completion scripts, with branch names completed from the repository.
        for shell in ["bash", "zsh", "fish"] {
            #expect(try s.ok(["completion", shell]).stdout.contains("mrepo"))
        }
        expectOneLineError(try s.run(["completion", "tcsh"]), status: 64, contains: "tcsh")
        // merge --method and resolve --method complete the method ids.
        #expect(try s.ok(["completion", "bash"]).stdout.contains("task_arithmetic"))
        // stash's actions include show (rewritten before parsing, so it had been left out).
        #expect(try s.ok(["completion", "bash"]).stdout.contains("'drop'$'\\n''show'"))
        let names = try s.ok(["---completion", "switch", "--", "positional@0", "2", "0", "mrepo", "switch", ""], in: "repo").stdout
        #expect(names.split(separator: "\n").map(String.init).sorted() == ["code", "hub", "main", "math"])
        // The man page, from the same help.
        let man = try s.ok(["help", "--man"]).stdout
        #expect(man.hasPrefix(".TH MREPO 1") && man.contains(".SH \"MREPO CHERRY-PICK\"") && man.contains("--tensor <glob>"))
    }

    // MARK: - Terminal habits; gc --prune-reflog=AGE

    /// Runs mrepo under script(1), so that its standard output is a terminal.
    func runOnTerminal(_ s: CLISandbox, _ args: String, environment: [String: String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        p.arguments = ["-qec", "\(CLISandbox.binary) \(args)", "/dev/null"]
        p.currentDirectoryURL = URL(fileURLWithPath: s.path("repo"))
        var env = ProcessInfo.processInfo.environment
        for (k, v) in s.environment { env[k] = v }
        env["NO_COLOR"] = nil
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe()
        p.standardOutput = out
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    @Test func pagerColourAndReflogExpiry() throws {
        let s = try family()
        // Not a terminal: no colour, no pager.
        let plain = try s.ok(["log", "--oneline"], in: "repo", environment: ["PAGER": "cat > \(s.path("paged-pipe"))"])
        #expect(!plain.stdout.contains("\u{1B}[") && s.read("paged-pipe") == nil)
        if FileManager.default.isExecutableFile(atPath: "/usr/bin/script") {
            _ = try runOnTerminal(s, "log --oneline", environment: ["PAGER": "cat > \(s.path("paged"))"])
            let paged = String(decoding: s.read("paged") ?? Data(), as: UTF8.self)
            #expect(paged.contains("base") && paged.contains("\u{1B}[33m"), "\(paged)")
            _ = try runOnTerminal(s, "log --oneline", environment: ["MREPO_PAGER": "cat > \(s.path("paged-mrepo"))", "PAGER": "false", "NO_COLOR": "1"])
            let uncoloured = String(decoding: s.read("paged-mrepo") ?? Data(), as: UTF8.self)
            #expect(uncoloured.contains("base") && !uncoloured.contains("\u{1B}["))
            let direct = try runOnTerminal(s, "log --oneline --no-pager --no-color", environment: ["PAGER": "cat > \(s.path("paged-not"))"])
            #expect(direct.contains("base") && !direct.contains("\u{1B}[") && s.read("paged-not") == nil)
            // A coloured table keeps its columns: the colour codes take no width (the diff's header
            // was padded as if they did).
            _ = try runOnTerminal(s, "diff main math", environment: ["PAGER": "cat > \(s.path("paged-diff"))"])
            let table = String(decoding: s.read("paged-diff") ?? Data(), as: UTF8.self).split(separator: "\n").map(String.init)
            let header = try #require(table.first { $0.contains("tensor") && $0.contains("shape") })
            let row = try #require(table.first { $0.contains("\u{1B}[33mM\u{1B}[m") })
            let plainRow = row.replacingOccurrences(of: "\u{1B}[33m", with: "").replacingOccurrences(of: "\u{1B}[m", with: "")
            // The mark column is one character wide, in the header as in the rows.
            #expect(header.hasPrefix("   tensor") && plainRow.hasPrefix("M  ") && !plainRow.hasPrefix("M   "), "\(header)\n\(plainRow)")
        }
        // gc --prune-reflog=AGE forgets only older entries.
        let before = lines(try s.ok(["reflog"], in: "repo")).count
        try s.ok(["gc", "-q", "--prune-reflog=30 days"], in: "repo")
        #expect(lines(try s.ok(["reflog"], in: "repo")).count == before)
        try s.ok(["gc", "-q", "--prune-reflog=now"], in: "repo")
        #expect(lines(try s.ok(["reflog"], in: "repo")).isEmpty)
        expectOneLineError(try s.run(["gc", "--prune-reflog=soon"], in: "repo"), status: 64, contains: "expected an age")
    }

    @Test func configSetsAuthorMergeMethodAndIsOverriddenByTheEnvironment() throws {
        let s = try family()
        s.environment["MREPO_AUTHOR"] = nil
        s.environment["XDG_CONFIG_HOME"] = s.path("xdg")
        try s.ok(["config", "--global", "user.author", "Global User <g@example.com>"], in: "repo")
        #expect(String(decoding: s.read("xdg/mrepo/config") ?? Data(), as: UTF8.self).contains("author = Global User <g@example.com>"))
        try s.ok(["commit", "-q", "--allow-empty", "-m", "one"], in: "repo")
        #expect(try s.ok(["log", "-1", "--format=%an"], in: "repo").stdout == "Global User\n")
        try s.ok(["config", "user.author", "Repo User <r@example.com>"], in: "repo")
        try s.ok(["commit", "-q", "--allow-empty", "-m", "two"], in: "repo")
        #expect(try s.ok(["log", "-1", "--format=%an"], in: "repo").stdout == "Repo User\n")
        try s.ok(["commit", "-q", "--allow-empty", "-m", "three"], in: "repo", environment: ["MREPO_AUTHOR": "Env User <e@example.com>"])
        #expect(try s.ok(["log", "-1", "--format=%an"], in: "repo").stdout == "Env User\n")
        #expect(try s.ok(["config", "user.author"], in: "repo").stdout == "Repo User <r@example.com>\n")
        #expect(try s.ok(["config", "--list"], in: "repo").stdout.contains("user.author=Repo User"))
        // What is in effect includes the environment, which wins (the file is unchanged).
        #expect(try s.ok(["config", "user.author"], in: "repo", environment: ["MREPO_AUTHOR": "Env User <e@example.com>"]).stdout
                    == "Env User <e@example.com>\n")
        #expect(try s.ok(["config", "--list"], in: "repo", environment: ["MREPO_THREADS": "3"]).stdout.contains("core.threads=3"))
        #expect(try s.ok(["config", "--global", "user.author"], in: "repo", environment: ["MREPO_AUTHOR": "Env User <e@example.com>"]).stdout
                    == "Global User <g@example.com>\n")
        // Values are checked when they are set.
        expectOneLineError(try s.run(["config", "merge.method", "bogus"], in: "repo"), status: 64, contains: "unknown method 'bogus'")
        expectOneLineError(try s.run(["config", "core.fsync", "maybe"], in: "repo"), status: 64, contains: "core.fsync must be true or false")
        expectOneLineError(try s.run(["config", "user.author", " "], in: "repo"), status: 64, contains: "must not be empty")
        // As --author: git's form, and one line (a newline wrote other settings into the file).
        expectOneLineError(try s.run(["config", "user.author", "noemail"], in: "repo"), status: 64, contains: "user.author 'noemail' is not 'Name <email>'")
        expectOneLineError(try s.run(["config", "user.author", "Ann <a@x>\n[core]\n\tfsync = false"], in: "repo"), status: 64,
                           contains: "user.author: the value holds a control character")
        #expect(!String(decoding: s.read("repo/.mrepo/config") ?? Data(), as: UTF8.self).contains("fsync"))
        try s.ok(["config", "--unset", "user.author"], in: "repo")
        #expect(try s.ok(["config", "user.author"], in: "repo").stdout == "Global User <g@example.com>\n")
        // Unsetting a key that is not set there: git's exit status 5, and the file untouched.
        let configBefore = try readFile(s.path("repo/.mrepo/config"))
        expectOneLineError(try s.run(["config", "--unset", "user.author"], in: "repo"), status: 5, contains: "user.author is not set in")
        #expect(try readFile(s.path("repo/.mrepo/config")) == configBefore)
        // As git's `notes show`: a commit without notes is an error with status 1 (it printed nothing, status 0).
        expectOneLineError(try s.run(["notes", "show", "HEAD"], in: "repo"), status: 1, contains: "no note found for commit")
        try s.ok(["notes", "add", "HEAD", "-m", "checked"], in: "repo")
        #expect(try s.ok(["notes", "show", "HEAD"], in: "repo").stdout == "checked\n")
        #expect(try s.run(["config", "merge.method"], in: "repo").status == 1)
        expectOneLineError(try s.run(["config", "colour.ui", "x"], in: "repo"), status: 64, contains: "unknown key 'colour.ui'")
        // merge.method: the method of a merge without --method.
        try s.ok(["config", "merge.method", "ties"], in: "repo")
        try s.ok(["merge", "-q", "math", "code"], in: "repo")
        let merged = try s.json(try s.ok(["show", "--json"], in: "repo")) as? [String: Any]
        let recipe = ((merged?["extra"] as? [String: Any])?["merge"] as? [String: Any])?["recipe"] as? [String: Any]
        #expect(recipe?["method"] as? String == "ties")
        // A config file mrepo cannot parse is named, and the command still runs.
        try Data("garbage\n".utf8).write(to: URL(fileURLWithPath: s.path("repo/.mrepo/config")))
        let r = try s.ok(["status"], in: "repo")
        #expect(r.stderr.contains(".mrepo/config:1: expected '[section]' or 'name = value'"))
    }

    /// A tuning variable set to something it does not take used to fall back to its default
    /// without a word (`MREPO_THREADS=two` ran on every core, `MREPO_FSYNC=false` kept syncing).
    /// It is refused in one line naming the variable, or the config file that set it, and
    /// `mrepo config` still runs to mend that file.
    @Test func tuningVariablesOutsideTheirValuesAreRefused() throws {
        let s = try CLISandbox()
        try s.ok(["init", "-q", "repo"])
        for (variable, value, expected) in [("MREPO_THREADS", "two", "a whole number from 1 to 1024"),
                                            ("MREPO_THREADS", "0", "a whole number from 1 to 1024"),
                                            ("MREPO_FSYNC", "maybe", "0 or 1"),
                                            ("MREPO_TRANSFER_BATCH_SECONDS", "-1", "a number of seconds"),
                                            ("MREPO_S3_PART_SIZE", "1024", "a whole number of bytes from 5242880 (5 MiB)"),
                                            ("MREPO_MERGE_WHOLE_MB", "1e3", "a whole number of MiB")] {
            expectOneLineError(try s.run(["status"], in: "repo", environment: [variable: value]), status: 64,
                               contains: "\(variable) is '\(value)': expected \(expected)")
        }
        // Values they take, and an empty one (unset), run.
        for (variable, value) in [("MREPO_THREADS", "2"), ("MREPO_FSYNC", "false"), ("MREPO_FSYNC", "ON"), ("MREPO_RANS", ""),
                                  ("MREPO_TRANSFER_BATCH_SECONDS", "0.5"), ("MREPO_S3_PART_SIZE", "\(8 << 20)")] {
            try s.ok(["commit", "-q", "--allow-empty", "-m", "\(variable)=\(value)"], in: "repo", environment: [variable: value])
        }
        // A config key set by hand to a bad value names the file and the way to change it.
        try Data("[core]\n\tthreads = lots\n".utf8).write(to: URL(fileURLWithPath: s.path("repo/.mrepo/config")))
        expectOneLineError(try s.run(["log"], in: "repo"), status: 64,
                           contains: "core.threads in \(s.path("repo/.mrepo/config")) is 'lots': expected a whole number")
        // The environment wins over the file, as for every key.
        try s.ok(["log", "-1"], in: "repo", environment: ["MREPO_THREADS": "1"])
        try s.ok(["config", "core.threads", "2"], in: "repo")
        #expect(try s.ok(["log", "--format=%s"], in: "repo").stdout.contains("MREPO_FSYNC=false"))
        // config sets only what every command then takes (2000 was set, then refused everywhere);
        // a word core.fsync does not know is named, not taken for "on".
        expectOneLineError(try s.run(["config", "core.threads", "2000"], in: "repo"), status: 64, contains: "core.threads must be a whole number from 1 to 1024")
        try Data("[core]\n\tfsync = flase\n".utf8).write(to: URL(fileURLWithPath: s.path("repo/.mrepo/config")))
        expectOneLineError(try s.run(["log"], in: "repo", environment: ["MREPO_FSYNC": ""]), status: 64, contains: "core.fsync in ")
    }

    @Test func commitFromWithoutCheckout() throws {
        let s = try family()
        let before = s.read("repo/model.safetensors")
        try s.ok(["switch", "-q", "-c", "chat", "main"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../family/chat", "--no-checkout", "-m", "chat"], in: "repo")
        // Recorded, not written: the working tree still holds base's files.
        #expect(s.read("repo/model.safetensors") == before)
        try s.ok(["export", "-q", "HEAD", "../chat-out"], in: "repo")
        #expect(s.sameFiles("chat-out", "family/chat"))
        #expect(try s.ok(["status"], in: "repo").stdout.contains("modified"))
        try s.ok(["checkout", "-q", "--force", "chat"], in: "repo")
        #expect(s.read("repo/model.safetensors") == s.read("family/chat/model.safetensors"))
        expectOneLineError(try s.run(["commit", "--no-checkout", "-m", "x"], in: "repo"), status: 64, contains: "--no-checkout goes with --from")
        // An empty folder (a run that wrote nothing) was recorded as deleting the whole model.
        try FileManager.default.createDirectory(atPath: s.path("empty"), withIntermediateDirectories: true)
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        expectOneLineError(try s.run(["commit", "--from", "../empty", "-m", "step 100"], in: "repo"), contains: "--from ../empty: the folder holds no file to commit")
        expectOneLineError(try s.run(["commit", "--from", "../empty", "--branch", "run", "-m", "step 100"], in: "repo"), contains: "pass --allow-empty")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == head)
        #expect(s.read("repo/model.safetensors") == s.read("family/chat/model.safetensors"))
        try s.ok(["commit", "-q", "--from", "../empty", "--branch", "run", "--allow-empty", "-m", "empty"], in: "repo")
        // A trainer's output_dir inside the project: taken with --branch, or when .mrepoignore leaves
        // it out (it was refused either way, with advice to commit the working tree instead).
        try FileManager.default.createDirectory(atPath: s.path("repo/outputs"), withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: s.path("family/math"), toPath: s.path("repo/outputs/step-100"))
        expectOneLineError(try s.run(["commit", "--from", "outputs/step-100", "-m", "step 100"], in: "repo"),
                           contains: "list it in .mrepoignore, or commit it with --branch B")
        try s.ok(["commit", "-q", "--from", "outputs/step-100", "--branch", "run1", "-m", "step 100"], in: "repo")
        try s.ok(["export", "-q", "run1", "../run1"], in: "repo")
        #expect(s.sameFiles("run1", "family/math"))
        try Data("outputs/\n".utf8).write(to: URL(fileURLWithPath: s.path("repo/.mrepoignore")))
        try s.ok(["commit", "-q", "--force", "--from", "outputs/step-100", "-m", "step 100"], in: "repo")
        #expect(s.read("repo/model.safetensors") == s.read("family/math/model.safetensors"))
        #expect(FileManager.default.fileExists(atPath: s.path("repo/outputs/step-100/model.safetensors")))
        // Never the store, whatever the options (its hooks replaced the model; its database was committed).
        for args in [["--from", ".mrepo", "--branch", "junk"], ["--from", ".mrepo/hooks"], ["--from", "./.mrepo/objects", "--no-checkout"]] {
            expectOneLineError(try s.run(["commit", "-m", "junk"] + args, in: "repo"), contains: "the folder is inside a repository's own store")
        }
    }

    /// `switch -C NAME` and `checkout -B NAME` (git's create-or-reset) are refused naming the way
    /// to do it: `-C` after `switch` was taken for a folder, so `switch -C ../other main` switched
    /// another repository. An empty commit message aborts the commit, as in git.
    @Test func forcedCreateAndEmptyMessagesAreRefused() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math"])
        try FileManager.default.copyItem(atPath: s.path("repo"), toPath: s.path("other"))
        let before = try s.ok(["rev-parse", "HEAD"], in: "other").stdout
        expectOneLineError(try s.run(["switch", "-C", "../other", "math"], in: "repo"), status: 64, contains: "branch -f")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "other").stdout == before, "the other repository did not move")
        expectOneLineError(try s.run(["checkout", "-B", "x", "math"], in: "repo"), status: 64, contains: "branch -f x")
        // -C DIR before the command still runs there.
        #expect(try s.ok(["-C", "other", "rev-parse", "HEAD"]).stdout == before)
        for message in ["", "   "] {
            expectOneLineError(try s.run(["commit", "--allow-empty", "-m", message], in: "repo"), status: 64, contains: "message is empty")
        }
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == before)
    }

    /// Metrics are printed as recorded, wherever they are printed (they were rounded to four
    /// digits: 123456789.5 became 1.235e+08, in --format too).
    @Test func metricsArePrintedExactly() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: [])
        try s.ok(["metric", "add", "y=123456789.5", "x=0.000012345", "steps=1000"], in: "repo")
        let shown = try s.ok(["metric", "show"], in: "repo").stdout
        #expect(shown.contains("y=123456789.5") && shown.contains("x=1.2345e-05") && shown.contains("steps=1000\n"), "\(shown)")
        #expect(try s.ok(["log", "-1", "--format=%(metric:y) %(metric:x)"], in: "repo").stdout == "123456789.5 1.2345e-05\n")
        #expect(try s.ok(["log", "-1", "--oneline", "--metric", "y"], in: "repo").stdout.contains(" y=123456789.5 "))
        #expect(try s.ok(["show"], in: "repo").stdout.contains("y=123456789.5"))
    }

    /// Two names that differ only in Unicode normalisation (Swift compares them as equal, so
    /// `branch -D café café` deleted one and left the other): the second is refused.
    @Test func refNamesEqualUpToNormalisationAreRefused() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: [])
        let composed = "caf\u{E9}", decomposed = "cafe\u{301}"
        try s.ok(["branch", composed], in: "repo")
        try s.ok(["tag", "v\u{E9}"], in: "repo")
        for args in [["branch", decomposed], ["tag", decomposed], ["switch", "-c", decomposed], ["branch", "-f", decomposed, "HEAD"],
                     ["switch", "--orphan", decomposed], ["tag", "-f", "ve\u{301}"]] {
            expectOneLineError(try s.run(args, in: "repo"), contains: "Unicode normalisation")
        }
        #expect(try s.run(["branch", "-c", composed, decomposed], in: "repo").status != 0)
        // Compared as bytes: Swift's String comparisons treat the two spellings as one.
        let listed = Data(try s.ok(["branch", "--json"], in: "repo").stdout.utf8)
        #expect(listed.range(of: Data(decomposed.utf8)) == nil && listed.range(of: Data(composed.utf8)) != nil)
        // A name whose bytes were not UTF-8 reaches mrepo with U+FFFD in their place: b\xff and
        // b\xfe were both created as one name.
        for args in [["branch", "b\u{FFFD}"], ["tag", "t\u{FFFD}"]] {
            expectOneLineError(try s.run(args, in: "repo"), contains: "must be valid UTF-8")
        }
        expectOneLineError(try s.run(["-C", "repo/model.safetensors", "status"]), contains: "cannot change to 'repo/model.safetensors': not a directory")
        expectOneLineError(try s.run(["branch", String(repeating: "L", count: 256)], in: "repo"), contains: "is 256 bytes long; a branch or tag name holds at most 255")
        expectOneLineError(try s.run(["branch", "refs/remotes/x"], in: "repo"), contains: "must not start with 'refs/'")
    }
}
