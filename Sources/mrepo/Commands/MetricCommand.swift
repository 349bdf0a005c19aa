import ArgumentParser
import Delta
import Foundation
import Repo

/// What `metric` does.
enum MetricAction: String, ExpressibleByArgument, CaseIterable {
    case add, show, remove
}

struct MetricCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "metric",
        abstract: "Add evaluation metrics to commits after the fact (their ids stay).",
        discussion: """
            'mrepo metric add [REV] NAME=VALUE...' records metrics beside a commit (HEAD by default), e.g. \
            an evaluation run after the commit was made. They override a metric of the same name recorded with the commit \
            wherever metrics are read: log, show, 'merge --method mwa' and the merge hooks \
            (MREPO_PARENT_METRICS, MREPO_EXPERT_METRICS). 'metric show REV' prints them all. 'metric remove [REV] NAME...' \
            takes back metrics added this way (those recorded with the commit are part of it and stay).
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("add, show or remove.", valueName: "action"))
    var action: MetricAction

    @Argument(help: ArgumentHelp("The commit.", valueName: "rev"), completion: CompletionNames.revisions)
    var revision = "HEAD"

    @Argument(help: ArgumentHelp("Metrics as NAME=VALUE (add), or names (remove).", valueName: "name=value"))
    var metrics: [String] = []

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        if action == .remove { return }
        // `metric add NAME=VALUE...` adds to HEAD: the first argument may be a metric.
        let given = action == .add && metrics.isEmpty && Metric.parse(revision) != nil ? [revision] : metrics
        // A lone NAME=VALUE whose value is no number is a metric gone wrong, not a revision.
        if action == .add && metrics.isEmpty && revision.contains("=") { try MetricCommand.check([revision]) }
        if action == .add && given.isEmpty { throw ValidationError("metric add needs NAME=VALUE, e.g. 'mrepo metric add HEAD eval_loss=1.83'") }
        if action == .show && !metrics.isEmpty { throw ValidationError("metric show takes only a revision") }
        try MetricCommand.check(given)
    }

    /// Every metric reads as NAME=VALUE, each name once.
    static func check(_ metrics: [String]) throws {
        for m in metrics where Metric.parse(m) == nil { throw ValidationError("'\(m)': expected name=value with a number, e.g. eval_loss=1.83") }
        let names = metrics.compactMap { Metric.parse($0)?.name }
        if Set(names).count != names.count { throw ValidationError("each metric name may be given once") }
    }

    func run() throws {
        let repo = try repository.open()
        if action == .remove {
            // `metric remove NAME...` takes from HEAD when the first argument names no revision.
            var revision = self.revision, names = self.metrics
            if (try? repo.resolve(revision)) == nil {
                names.insert(revision, at: 0)
                revision = "HEAD"
            }
            if names.isEmpty { throw ValidationError("metric remove needs the names of the metrics to take back: metric remove [REV] NAME...") }
            names = names.reduce(into: []) { if !$0.contains($1) { $0.append($1) } }
            let id = try repo.removeMetrics(names, of: revision, wait: lock.wait)
            if json { try printJSON(MetricsDocument(commit: id, metrics: try repo.metrics(of: try repo.commit(id)))) }
            else if !repository.quiet { print("Removed \(names.count) metric\(names.count == 1 ? "" : "s") of \(id.short).") }
            return
        }
        var revision = self.revision, metrics = self.metrics
        // The first argument is a metric for HEAD when it reads as one and names no revision (a
        // branch may be called 'lr=3e-4').
        if action == .add, Metric.parse(revision) != nil, (try? repo.resolve(revision)) == nil {
            metrics.insert(revision, at: 0)
            revision = "HEAD"
            try MetricCommand.check(metrics)
        }
        if action == .add && metrics.isEmpty {
            throw ValidationError("metric add \(revision): give NAME=VALUE after the revision, e.g. 'mrepo metric add \(revision) eval_loss=1.83'")
        }
        let id = action == .add ? try repo.addMetrics(metrics.compactMap(Metric.parse), to: revision, wait: lock.wait) : try repo.resolve(revision)
        let all = try repo.metrics(of: try repo.commit(id))
        if json {
            try printJSON(MetricsDocument(commit: id, metrics: all))
            return
        }
        if action == .add {
            if !repository.quiet { print("Recorded \(metrics.count) metric\(metrics.count == 1 ? "" : "s") for \(id.short).") }
        } else {
            for m in all { print("\(m.name)=\(Format.metric(m.value))") }
        }
    }
}
