import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

struct ExpertsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "experts",
        abstract: "List the experts of a reversible merge and how well its basis rebuilds each.",
        discussion: """
            For each expert: its rank, the mean and largest per-tensor relative reconstruction error \
            ‖ΔWᵢ − ΔŴᵢ‖/‖ΔWᵢ‖, the error of the whole task vector, and the fraction of its (centred) \
            energy the basis keeps; then the storage of the merge against holding all N experts, as \
            bytes and as the formula (k(r+N)+r)/(rN), and the single-model baselines. --tensors adds \
            the error of every tensor. Rebuild an expert with 'mrepo checkout MERGE --expert NAME' or \
            'mrepo export MERGE DIR --expert NAME [--fold]'.
            """)

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("The reversible merge commit.", valueName: "merge"))
    var revision = "HEAD"

    @Flag(help: "Also list every tensor's error per expert.")
    var tensors = false

    @Flag(help: "Print the full report as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open(access: .readOnly)
        let (commit, _, report) = try repo.reversibleReport(revision)
        if json {
            try printJSON(PrefixedDocument(head: ExpertsHead(commit: commit.id.hex), body: report))
            return
        }
        print("Reversible merge \(commit.id.short): \(commit.subject)")
        ReversiblePrinter.summary(report, commit: commit.id)
        if tensors {
            print("")
            let header = ["tensor", "k", "energy"] + report.experts.map(\.name)
            let rows = report.modules.map { m in
                [m.name, "\(m.k)", Format.number(m.retainedEnergy)] + m.errors.map { Format.number($0, digits: 4) }
            }
            print(Format.table(header, rows, right: Set(1..<header.count)))
        }
    }
}
