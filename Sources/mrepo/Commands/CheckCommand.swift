import ArgumentParser
import Delta
import Foundation
import ModelFactory

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate checkpoint files without a repository: headers, shard indexes, and optionally NaN/Inf.",
        discussion: "Exits 0 when everything is valid, 1 when a problem was found (one line each). The sample pre-commit hook runs 'mrepo check --finite' on the folder being committed.")

    @Argument(help: ArgumentHelp("Files or folders to check (folders are searched for *.safetensors and *.safetensors.index.json).", valueName: "path"))
    var paths: [String] = ["."]

    @Flag(help: "Also scan every floating-point tensor for NaN and infinite values.")
    var finite = false

    @Flag(name: .shortAndLong, help: "Print only problems.")
    var quiet = false

    @Flag(help: "Print the result as JSON (exit status 1 still means a problem was found).")
    var json = false

    func run() throws {
        let report = CheckpointCheck.check(paths: paths, finite: finite)
        if json {
            try printJSON(CheckDocument(ok: report.findings.isEmpty, files: report.files, tensors: report.tensors, bytes: report.bytes,
                                        finiteChecked: finite, problems: report.findings.map { "\($0)" }))
            if !report.findings.isEmpty { throw ExitCode(1) }
            return
        }
        for f in report.findings { print("error: \(f)") }
        if !quiet && report.findings.isEmpty {
            print("ok: \(report.files) safetensors files, \(report.tensors) tensors, \(Format.bytes(report.bytes))" + (finite ? ", all finite" : ""))
        }
        if !report.findings.isEmpty { throw ExitCode(1) }
    }
}
