import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

// `mrepo show` as text: a commit's header, storage and files, a merge's recipe, a conflict report.
extension ShowCommand {
    /// `show --conflicts`: the merge's conflict report (or a reversible merge's summary).
    func showConflicts(_ repo: Repository, id: ObjectID) throws {
        guard let r = try repo.mergeReport(of: id) else {
            throw RepoError.invalidArgument("\(revision) (\(id.short)) is not a merge commit made by mrepo merge; it has no conflict report")
        }
        if json { try printJSON(r); return }
        let report: ConflictReport
        switch r {
        case let .reversible(reversible):
            ReversiblePrinter.summary(reversible, commit: id)
            return
        case let .tensors(tensors):
            report = tensors
        }
        let rows = report.tensors.map { t -> [String] in
            [t.name, t.mergeClass.rawValue, Format.number(t.metrics?.minCosine), Format.number(t.metrics?.signConflict),
             Format.number(t.metrics?.conflictingMass), note(t)]
        }
        print(Format.table(["tensor", "class", "min cos", "sign conflict", "conflicting mass", "note"], rows, right: [2, 3, 4]))
    }

    /// A tensor's note: a conflict settled by `resolve` says how, then why it stopped the merge.
    private func note(_ t: TensorReport) -> String {
        switch (t.resolution, t.conflict) {
        case let (resolution?, conflict?): return "resolved: \(resolution); was: \(conflict)"
        case let (resolution?, nil): return "resolved: \(resolution)"
        case let (nil, conflict?): return conflict
        case (nil, nil):
            // A one-sided tensor names the expert it was taken from: a commit id for a revert or a
            // cherry-pick, shown as 12 digits, as in the rest of the table's output.
            guard let source = t.source else { return "" }
            return ObjectID(hex: source)?.short ?? source
        }
    }

    /// `show REV`: the commit, as JSON or text.
    func showCommit(_ repo: Repository, id: ObjectID) throws {
        let c = try repo.commit(id)
        let tree = try repo.tree(of: id)
        let names = try repo.decorations()[id] ?? []
        let objectInfo = try repo.objectInfos(of: tree)
        var encodings: [String: Int] = [:]
        for (_, t) in tree.allTensors {
            encodings[objectInfo[t.objectID].map { $0.encoding.description } ?? "?", default: 0] += 1
        }
        let stored = objectInfo.values.reduce(0) { $0 + $1.storedByteCount }
        if json {
            try printJSON(ShowDocument(c, names: names, tree: tree, objects: objectInfo, metrics: try repo.metrics(of: c),
                                       notes: try repo.notes(of: id)))
            return
        }
        let decorated = LogCommand.decoration(names, of: id, head: try repo.head())
        print("commit \(c.id.hex)" + (decorated.isEmpty ? "" : " (\(decorated.joined(separator: ", ")))"))
        if !c.parents.isEmpty { print("Parents: \(c.parents.map(\.short).joined(separator: " "))") }
        print("Author:  \(c.author)")
        print("Date:    \(Format.date(c.timestamp))")
        if let base = c.base { print("Base:    \(base.short) (tensors are stored as deltas against it)") }
        let metrics = try repo.metrics(of: c)
        if !metrics.isEmpty {
            print("Metrics: " + metrics.map { "\($0.name)=\(Format.metric($0.value))" }.joined(separator: " "))
        }
        print("")
        for line in c.message.split(separator: "\n", omittingEmptySubsequences: false) { print("    \(line)") }
        print("")
        let notes = try repo.notes(of: id)
        if !notes.isEmpty {
            print("Notes:")
            for n in notes { for line in n.text.split(separator: "\n", omittingEmptySubsequences: false) { print("    \(line)") } }
            print("")
        }
        print("Storage: \(c.storage); \(tree.files.count) files, \(tree.tensorCount) tensors, \(Format.bytes(tree.logicalByteCount)) "
            + "(objects of this tree: \(Format.bytes(stored)) stored)")
        if !encodings.isEmpty {
            print("Encodings: " + encodings.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        if let m = try repo.mergeSummary(of: id) { printMergeSummary(m) }
        if let lossy = try c.record(LossyRecord.self) {
            print("Lossy:   \(lossy.method) \(lossy.settingDescription): \(lossy.tensorCount) tensors in \(Format.bytes(lossy.storedByteCount)) instead of \(Format.bytes(lossy.denseByteCount)) "
                + "(saves \(Format.percent(lossy.savedFraction))); relative Frobenius error mean "
                + "\(Format.number(lossy.meanRelativeError, digits: 4)), max \(Format.number(lossy.maxRelativeError, digits: 4)) (--tensors lists each)")
        }
        if let a = try c.record(AdapterRecord.self) {
            print("Adapter: LoRA of \(a.base.hex.prefix(12)), r=\(a.rank), alpha=\(Format.plain(a.alpha)), "
                + "\(a.moduleCount) modules (\(a.targets.joined(separator: ", ")))")
        }
        if let r = try c.record(ReversibleMergeRecord.self) {
            print("RMM:     \(r.variant) basis K=\(r.basis) over \(r.experts.map(\.name).joined(separator: ", ")); "
                + "'mrepo experts \(revision)' lists the rebuild errors, 'mrepo checkout \(revision) --expert NAME' rebuilds one")
        }
        if case let .object(members) = c.extra {
            for m in members where !["storage", "merge", "lossy", "adapter", "rmm"].contains(m.key) {
                print("\(m.key): \(m.value.serialized())")
            }
        }
        print("")
        let rows = tree.files.map { f in
            [f.path, f.kind == .safetensors ? "\(f.tensors.count) tensors" : "file", Format.bytes(f.byteCount)]
        }
        print(Format.table(["path", "content", "size"], rows, right: [2]))
        if tensors {
            print("")
            let trows = tree.allTensors.map { p, t -> [String] in
                let info = objectInfo[t.objectID]
                return [t.name, t.dtype.rawValue, Format.shape(t.shape), t.objectID.short, info?.encoding.description ?? "?",
                        info.map { Format.bytes($0.storedByteCount) } ?? "?", p]
            }
            let lossyErrors = Dictionary((try c.record(LossyRecord.self)?.tensors ?? []).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            let rows = lossyErrors.isEmpty ? trows : zip(tree.allTensors, trows).map { pt, row in
                row + [lossyErrors[pt.tensor.name].map { "rank \($0.rank), error \(Format.number($0.relativeError, digits: 4))" } ?? ""]
            }
            print(Format.table(["tensor", "dtype", "shape", "object", "encoding", "stored", "file"] + (lossyErrors.isEmpty ? [] : ["low-rank"]), rows, right: [5]))
        }
    }

    /// The `Merge:` lines of a merge commit: method, experts, parameters, rules, resolutions.
    func printMergeSummary(_ m: MergeSummary) {
        let recipe = m.recipe
        let experts = (recipe["experts"]?.arrayValue ?? []).map { e -> String in
            let params = e["parameters"]?.objectValue ?? []
            return (e["name"]?.stringValue ?? "?") + (params.isEmpty ? "" : " (" + params.map { "\($0.key)=\($0.value.serialized())" }.joined(separator: ", ") + ")")
        }
        print("Merge:   \(recipe["method"]?.stringValue ?? "?") of \(experts.joined(separator: ", ")); merge base \(m.base.hex.prefix(12)); seed \(recipe["seed"]?.serialized() ?? "0"); \(m.tool)")
        let params = recipe["parameters"]?.objectValue ?? []
        if !params.isEmpty { print("         parameters: " + params.map { "\($0.key)=\($0.value.serialized())" }.joined(separator: ", ")) }
        for key in ["lines", "consensus"] { if let v = recipe[key] { print("         \(key): \(v.serialized())") } }
        do {
            var rules: [String] = []
            if let r = m.oneSided { rules.append("one-sided tensors: \(r.rawValue)") }
            if let d = m.outputDType { rules.append("written as \(d)") }
            let t = m.thresholds
            let limits = [("max sign conflict", t.maxSignConflict), ("min cosine", t.minCosine), ("max conflicting mass", t.maxConflictingMass)]
                .compactMap { k, v in v.map { "\(k) \(Format.number($0))" } }
            if !limits.isEmpty { rules.append("thresholds: " + limits.joined(separator: ", ")) }
            if !rules.isEmpty { print("         " + rules.joined(separator: "; ")) }
            if !m.resolutions.isEmpty {
                print("         resolved \(m.resolutions.count) tensor\(m.resolutions.count == 1 ? "" : "s") by hand\(m.hasRecipeFile ? " (replayed by its merge_recipe.yml)" : ""):")
                for r in m.resolutions.prefix(20) { print("           \(r.tensor): \(r.summary)") }
                if m.resolutions.count > 20 { print("           ... and \(m.resolutions.count - 20) more ('mrepo show --json' lists them)") }
            }
        }
        print("         tensors: " + m.tensorClasses.filter { $0.count != 0 }.map { "\($0.count) \($0.name)" }.joined(separator: ", ")
            + " ('mrepo show --conflicts \(revision)' lists them)")
    }
}
