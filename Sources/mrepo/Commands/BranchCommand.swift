import ArgumentParser
import Foundation
import Repo

struct BranchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "branch",
        abstract: "List, create, rename or delete branches.",
        discussion: """
            'mrepo branch' lists branches (* marks the current one, + one checked out in another working tree). \
            'mrepo branch NAME [START]' creates a branch at START (default HEAD) without switching to it; -f \
            moves an existing one there. 'mrepo branch -d NAME...' deletes branches whose commits HEAD contains (all or none); -D \
            deletes it anyway. 'mrepo branch -m [OLD] NEW' renames a branch (the current one by default), keeping \
            its reflog; -M replaces a branch named NEW. 'mrepo branch -c [OLD] NEW' copies one, with its reflog \
            and upstream; -C replaces a branch named NEW. 'mrepo branch -r' lists the remote-tracking branches \
            (origin/main, as the last fetch, pull or push left them), -a the local ones and then those, as git does. \
            --merged [REV] lists the branches whose tips REV (default HEAD) contains, --no-merged the others, \
            --contains [REV] those that contain REV.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Name of the branch to create or delete (with -m: the old name, or the new one alone).", valueName: "name"), completion: CompletionNames.branches)
    var name: String?

    @Argument(help: ArgumentHelp("Where the new branch starts (default HEAD); with -m: the new name; with -d or -D: another branch to delete.", valueName: "start"))
    var startPoint: String?

    /// `branch -d A B C`: the third branch to delete and after.
    @Argument(help: .hidden)
    var moreNames: [String] = []

    @Flag(name: .customShort("d"), help: "Delete the branch (it must be merged into HEAD).")
    var delete = false

    @Flag(name: .customShort("D"), help: "Delete the branch even if HEAD does not contain its commits.")
    var forceDelete = false

    @Flag(name: .customShort("m"), help: "Rename a branch (the current one when only the new name is given).")
    var move = false

    @Flag(name: .customShort("M"), help: "Rename a branch, replacing a branch of the new name.")
    var forceMove = false

    @Flag(name: .customShort("c"), help: "Copy a branch (the current one when only the new name is given): the copy starts at its commit, with its reflog and upstream.")
    var copy = false

    @Flag(name: .customShort("C"), help: "Copy a branch, replacing a branch of the new name. (-C before the command name is git's 'run in this folder'.)")
    var forceCopy = false

    @Flag(name: .shortAndLong, help: "Create the branch even if it exists: move it to START.")
    var force = false

    @Flag(name: .customShort("v"), help: "Accepted as in git: the list always shows each branch's commit and subject; -vv adds its upstream and how far each side is ahead.")
    var verbose: Int

    @Flag(name: [.customShort("r"), .customLong("remotes")], help: "List the remote-tracking branches (origin/main) instead of the local ones.")
    var remotes = false

    @Flag(name: [.customShort("a"), .customLong("all")], help: "List the local branches, then the remote-tracking ones (as remotes/origin/main).")
    var all = false

    @Option(help: ArgumentHelp("List only branches whose tip REV contains (merged into it; git's --merged, whose REV defaults to HEAD).", valueName: "rev"), completion: CompletionNames.revisions)
    var merged: String?

    @Option(help: ArgumentHelp("List only branches whose tip REV does not contain (default HEAD).", valueName: "rev"), completion: CompletionNames.revisions)
    var noMerged: String?

    @Option(help: ArgumentHelp("List only branches that contain REV (default HEAD).", valueName: "rev"), completion: CompletionNames.revisions)
    var contains: String?

    @Flag(help: "Print the current branch's name (nothing on a detached HEAD).")
    var showCurrent = false

    @OptionGroup var tracking: TrackingOptions

    @Option(name: [.customShort("u"), .customLong("set-upstream-to")],
            help: ArgumentHelp("Make the branch (NAME, default the current one) track this remote-tracking branch (origin/main), for status, pull and push.", valueName: "upstream"))
    var setUpstreamTo: String?

    @Flag(help: "Forget the upstream of the branch (NAME, default the current one).")
    var unsetUpstream = false

    @Flag(help: "Print the branches as JSON.")
    var json = false

    func validate() throws {
        let modes = [delete || forceDelete, move || forceMove, copy || forceCopy, showCurrent].filter { $0 }.count
        if modes > 1 { throw ValidationError("-d/-D, -m/-M, -c/-C and --show-current exclude each other") }
        if (copy || forceCopy) && name == nil { throw ValidationError("-c and -C need the new name") }
        if (delete || forceDelete) && name == nil { throw ValidationError("-d and -D need a branch name") }
        if !(delete || forceDelete) && !moreNames.isEmpty { throw ValidationError("too many arguments; only -d and -D take more than two branch names") }
        if (move || forceMove) && name == nil { throw ValidationError("-m and -M need the new name") }
        if showCurrent && name != nil { throw ValidationError("--show-current takes no name") }
        if (remotes || all) && (name != nil || modes > 0 || force) { throw ValidationError("-r and -a list branches: they take no name and no other mode") }
        let filters = merged != nil || noMerged != nil || contains != nil
        if filters && (name != nil || modes > 0 || force) { throw ValidationError("--merged, --no-merged and --contains filter the list: they take no name and no other mode") }
        if merged != nil && noMerged != nil { throw ValidationError("--merged and --no-merged: give one of them") }
        if force && (name == nil || delete || forceDelete || move || forceMove) { throw ValidationError("-f needs a branch name to create or move") }
        let upstreamModes = (setUpstreamTo != nil ? 1 : 0) + (unsetUpstream ? 1 : 0)
        if upstreamModes > 0 && (modes > 0 || force || remotes || all || filters || tracking.isGiven || startPoint != nil || upstreamModes > 1) {
            throw ValidationError("-u/--set-upstream-to and --unset-upstream take at most a branch name, and no other mode")
        }
        if tracking.isGiven && (name == nil || modes > 0) { throw ValidationError("--track and --no-track go with a branch to create (or move with -f)") }
    }

    func run() throws {
        let repo = try repository.open()
        if showCurrent {
            let current = try repo.currentBranch()
            if json { try printJSON(CurrentBranchDocument(branch: OrNull(current))) } else if let current { print(current) }
            return
        }
        if move || forceMove, let name {
            let current = try repo.currentBranch() ?? ""
            let (old, new) = startPoint.map { (name, $0) } ?? (current, name)
            if old.isEmpty { throw RepoError.invalidArgument("HEAD is detached: name the branch to rename (branch -m OLD NEW)") }
            try repo.renameBranch(old, to: new, force: forceMove, wait: lock.wait)
            if json { try printJSON(RenamedDocument(renamed: old, name: new)) } else if !repository.quiet { print("Renamed branch \(old) to \(new).") }
            return
        }
        if copy || forceCopy, let name {
            let current = try repo.currentBranch() ?? ""
            let (old, new) = startPoint.map { (name, $0) } ?? (current, name)
            if old.isEmpty { throw RepoError.invalidArgument("HEAD is detached: name the branch to copy (branch -c OLD NEW)") }
            let target = try repo.copyBranch(old, to: new, force: forceCopy, wait: lock.wait)
            if json { try printJSON(CreatedBranchDocument(created: new, commit: target.hex, upstream: OrNull(try repo.upstreamName(of: new)))) }
            else if !repository.quiet { print("Copied branch \(old) to \(new) (at \(target.short)).") }
            return
        }
        if let upstream = setUpstreamTo {
            let branch = try repo.setUpstream(of: name, to: upstream, wait: lock.wait)
            let shown = try repo.upstreamName(of: branch)
            if json { try printJSON(UpstreamDocument(branch: branch, upstream: OrNull(shown))) }
            else if !repository.quiet { print("branch '\(branch)' set up to track '\(shown ?? upstream)'.") }
            return
        }
        if unsetUpstream {
            let branch = try repo.unsetUpstream(of: name, wait: lock.wait)
            if json { try printJSON(UpstreamDocument(branch: branch, upstream: OrNull(nil))) }
            else if !repository.quiet { print("branch '\(branch)' tracks nothing now.") }
            return
        }
        if let name {
            if delete || forceDelete {
                let names = [name] + [startPoint].compactMap { $0 } + moreNames
                try DeletedRefDocument.present(try repo.deleteBranches(names, force: forceDelete, wait: lock.wait), kind: "branch",
                                               several: names.count > 1, json: json, quiet: repository.quiet)
            } else {
                let before = force ? try repo.upstreamName(of: name) : nil
                let target = force ? try repo.forceBranch(name, at: startPoint, tracking: tracking.tracking, wait: lock.wait)
                    : try repo.createBranch(name, at: startPoint, tracking: tracking.tracking, wait: lock.wait)
                let upstream = try repo.upstreamName(of: name)
                if json { try printJSON(CreatedBranchDocument(created: name, commit: target.hex, upstream: OrNull(upstream))) } else if !repository.quiet {
                    print("\(force ? "Set" : "Created") branch \(name) at \(target.short).")
                    // Only when this command set it (a moved branch keeps an upstream it had).
                    if let upstream, startPoint != nil, tracking.tracking != .never, !force || upstream != before {
                        print("branch '\(name)' set up to track '\(upstream)'.")
                    }
                }
            }
            return
        }
        let filter = merged.map { ($0, true) } ?? noMerged.map { ($0, false) }
        let branches = try repo.branches(local: !remotes, remoteTracking: remotes || all, merged: filter, containing: contains)
        if json {
            try printJSON(branches.map {
                BranchDocument(name: $0.name, commit: $0.target.hex, current: $0.isCurrent, subject: $0.subject, worktree: OrNull($0.worktree),
                               remote: OrNull($0.remote), upstream: OrNull($0.remote == nil ? try repo.upstreamName(of: $0.name) : nil))
            })
            return
        }
        // git's -a spells remote-tracking branches remotes/origin/main; -r, origin/main.
        func shown(_ b: BranchInfo) -> String { all && b.remote != nil ? "remotes/" + b.name : b.name }
        if !remotes, filter == nil, contains == nil, !branches.contains(where: { $0.remote == nil }), let head = try? repo.head(), let b = head.branchName {
            print("* \(b) (no commits yet)")
        }
        // A detached HEAD heads the list, as in git's.
        if !remotes, filter == nil, contains == nil, case let .detached(id)? = try? repo.head() {
            print("* (HEAD detached at \(id.short))")
        }
        let width = branches.map { shown($0).count }.max() ?? 0
        for b in branches {
            // The list always shows each branch's commit and subject (git's -v); -vv adds the
            // upstream and how far each side is ahead, as git does.
            var upstream = ""
            if verbose >= 2, b.remote == nil, let t = try repo.trackingStatus(of: b.name) {
                let counts = t.gone ? ["gone"] : [t.ahead > 0 ? "ahead \(t.ahead)" : nil, t.behind > 0 ? "behind \(t.behind)" : nil].compactMap { $0 }
                upstream = "[\(t.upstream)\(counts.isEmpty ? "" : ": " + counts.joined(separator: ", "))] "
            }
            print("\(b.isCurrent ? "*" : b.worktree != nil ? "+" : " ") \(Format.pad(shown(b), width))  \(b.target.short)  \(upstream)\(b.subject)")
        }
    }
}
