import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

/// What `mrepo merge` prints: the report as a table or JSON, the HTML page, what to do next.
extension MergeCommand {
    func present(_ outcome: MergeOutcome, repo: Repository) throws {
        if let reversible = outcome.reversible, case let .committed(c) = outcome.status {
            if let path = self.report {
                let html = reversible.html(title: "mrepo merge \(c.id.short): \(reversible.experts.map(\.name).joined(separator: ", ")) (rmm)",
                                           recipe: outcome.recipeYAML)
                try writeReport(html, to: path, commit: c.id, repo: repo)
            }
            if json {
                try printJSON(PrefixedDocument(head: ReversibleMergeHead(commit: c.id.hex), body: reversible))
            } else if !repository.quiet {
                print("[\(try repo.currentBranch() ?? "detached HEAD") \(c.id.short)] \(c.subject)")
                ReversiblePrinter.summary(reversible, commit: c.id)
            }
            return
        }
        let report = outcome.report
        if let path = report.isEmptyMerge ? nil : self.report {
            let html = report.html(title: "mrepo merge: \(report.experts.joined(separator: ", ")) (\(report.method))", recipe: outcome.recipeYAML)
            var commit: ObjectID?
            if case let .committed(c) = outcome.status { commit = c.id }
            try writeReport(html, to: path, commit: commit, repo: repo)
        }
        if json {
            try printJSON(PrefixedDocument(head: MergeOutcomeHead(outcome), body: report))
        } else {
            printTable(outcome)
        }
        if case .conflicted = outcome.status { throw ExitCode(1) }
    }

    /// Writes the HTML page; when that fails after the merge was recorded, the error says so
    /// (a script that retries on the exit status would merge twice) and how to write it again.
    func writeReport(_ html: String, to path: String, commit: ObjectID?, repo: Repository) throws {
        do {
            try repo.writeFile(Array(html.utf8), to: path)
        } catch {
            guard let commit else { throw error }
            throw RepoError.invalidArgument("\((error as? RepoError)?.description ?? "\(error)"); the merge itself was recorded as \(commit.short): 'mrepo show \(commit.short) --report FILE' writes the page")
        }
    }

    func printTable(_ outcome: MergeOutcome) {
        let report = outcome.report
        if repository.quiet {
            // Quiet: only what the user must act on.
            if case .conflicted = outcome.status { printUnresolved(report) }
            return
        }
        switch outcome.status {
        case .upToDate:
            print("Already up to date.")
            return
        case let .fastForward(id):
            print("Fast-forward to \(id.short).")
            return
        default:
            break
        }
        if let base = outcome.base {
            var line = "Merge base \(base.short)"
            if outcome.baseCandidates.count > 1 {
                line += " (chosen among \(outcome.baseCandidates.count) best common ancestors: \(outcome.baseCandidates.map(\.short).joined(separator: ", ")); pass --base to pick another)"
            }
            print(line + "; experts: \(report.experts.joined(separator: ", ")); method \(report.method).")
        }
        let counts = report.classCounts
        // Tensors a threshold stopped are counted in their class and, beside, as unresolved.
        let unresolved = report.unresolved.isEmpty ? "" : "; \(report.unresolved.count) unresolved (stopped by a threshold or a conflict)"
        print(MergeClass.allCases.map { "\(counts[$0] ?? 0) \($0.rawValue)" }.joined(separator: ", ") + unresolved)
        for f in report.files where f.outcome != "unchanged" { print("  file \(f.path): \(f.outcome)") }
        if case .planned = outcome.status {
            print("Estimated peak memory: \(Format.bytes(outcome.estimatedPeakBytes)) (\(outcome.estimatedPeakFormula), plus buffers).")
            let rows = report.tensors.filter { $0.mergeClass != .unchanged }.map { t in
                [t.mergeClass.rawValue, t.name, t.source ?? "", t.conflict ?? ""]
            }
            if !rows.isEmpty { print(Format.table(["class", "tensor", "from", "conflict"], rows)) }
            return
        }
        let top = report.topConflicts(15)
        if !top.isEmpty {
            print("")
            print(Format.table(["tensor", "min cos", "sign conflict", "conflicting mass", "kept", "TALL none", "status"], top.map { t in
                let m = t.metrics
                return [t.name, Format.number(m?.minCosine), Format.number(m?.signConflict), Format.number(m?.conflictingMass),
                        m?.keptFraction.map { $0.map { String(format: "%.2f", $0) }.joined(separator: "/") } ?? "-",
                        Format.number(m?.tallNone), t.conflict ?? "merged"]
            }, right: [1, 2, 3, 5]))
        }
        switch outcome.status {
        case let .committed(c):
            print("\nMerge made by the '\(report.method)' method: \(c.id.short) \(c.subject)")
        case .conflicted:
            print("")
            printUnresolved(report)
        case .ready:
            print("\nMerged into the working tree without committing; 'mrepo merge --continue' commits it, 'mrepo merge --abort' drops it.")
        default:
            break
        }
        if let path = self.report { print("Report: \(path)") }
    }

    func printUnresolved(_ report: ConflictReport) {
        print("Merge stopped: \(report.unresolved.count) unresolved tensor\(report.unresolved.count == 1 ? "" : "s"):")
        for t in report.unresolved.prefix(20) { print("  \(t.name): \(t.conflict ?? "")") }
        if report.unresolved.count > 20 { print("  ... and \(report.unresolved.count - 20) more ('mrepo status' lists them all)") }
        print("Settle them with 'mrepo resolve GLOB --ours|--theirs|--base|--method M', then 'mrepo merge --continue' (or 'mrepo merge --abort').")
    }
}
