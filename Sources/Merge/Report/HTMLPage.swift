import Foundation

/// What the self-contained HTML reports share: the page head and its style, escaping, numbers.
/// No script and no network, so a report opens anywhere and can be attached to a review.
enum HTMLPage {
    static func head(title: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>\(escape(title))</title>
        <style>
        body { font: 14px/1.45 system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
        h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
        table { border-collapse: collapse; margin: .6em 0; } td, th { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
        th { background: #f3f3f3; } td.l, th.l { text-align: left; }
        pre { background: #f6f6f6; padding: .8em; overflow-x: auto; }
        .bad { color: #b00020; font-weight: 600; } .legend { font-size: 12px; color: #555; }
        </style></head><body>
        <h1>\(escape(title))</h1>

        """
    }

    static func number(_ x: Double?) -> String {
        guard let x, x.isFinite else { return "-" }
        return String(format: abs(x) >= 100 ? "%.0f" : "%.3f", x)
    }

    static func precise(_ x: Double?) -> String {
        guard let x, x.isFinite else { return "-" }
        return String(format: "%.2e", x)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// A table: header cells, rows, and which columns are text (left-aligned).
    static func table(_ header: [String], _ rows: [[String]], text: Set<Int> = [0]) -> String {
        var out = "<table><tr>" + header.enumerated().map { i, h in "<th\(text.contains(i) ? " class=\"l\"" : "")>\(escape(h))</th>" }.joined() + "</tr>\n"
        for row in rows {
            out += "<tr>" + row.enumerated().map { i, c in "<td\(text.contains(i) ? " class=\"l\"" : "")>\(escape(c))</td>" }.joined() + "</tr>\n"
        }
        return out + "</table>\n"
    }
}

extension ReversibleMergeReport {
    /// One self-contained HTML page: how well the basis rebuilds each expert, per module, the
    /// storage against the experts, and the one-model baselines.
    public func html(title: String, recipe: String) -> String {
        var out = HTMLPage.head(title: title)
        out += "<p>Reversible merge (rmm), variant <b>\(HTMLPage.escape(variant.rawValue))</b>, basis K = <b>\(basis)</b>\(center ? "" : " (uncentred)") over \(experts.count) \(kind == .adapter ? "LoRA adapters" : "full fine-tunes"), \(modules.count) modules.</p>\n"
        for remark in remarks { out += "<p class=\"legend\">\(HTMLPage.escape(remark))</p>\n" }
        out += "<h2>Experts rebuilt from the basis</h2>\n"
        out += HTMLPage.table(["expert", "commit", "rank", "mean error", "max error", "whole error", "retained energy"], experts.map { e in
            [e.name, String(e.commit.prefix(12)), "\(e.rank)", HTMLPage.precise(e.meanError), HTMLPage.precise(e.maxError),
             HTMLPage.precise(e.globalError), HTMLPage.number(e.retainedEnergy)]
        }, text: [0, 1])
        var storage = "Basis \(storedBytes) bytes against \(expertBytes) for the \(experts.count) experts"
        storage += String(format: "; %.1f%% of their Float32 values", 100 * parameterRatio)
        if let f = formulaRatio { storage += String(format: " (formula (k(r+N)+r)/(rN) = %.1f%%)", 100 * f) }
        out += "<h2>Storage</h2>\n<p>\(HTMLPage.escape(storage)).</p>\n"
        if !baselines.isEmpty {
            out += "<h2>One merged model instead</h2>\n<p>Relative reconstruction error of each expert's ΔW when only one model is kept.</p>\n"
            let mean = experts.map(\.meanError).reduce(0, +) / Double(max(experts.count, 1))
            out += HTMLPage.table(["method", "mean error", "max error"],
                                  [["rmm (this merge)", HTMLPage.precise(mean), HTMLPage.precise(experts.map(\.maxError).max())]]
                                  + baselines.map { [$0.name, HTMLPage.precise($0.meanError), HTMLPage.precise($0.maxError)] })
        }
        out += "<h2>Modules</h2>\n"
        out += HTMLPage.table(["module", "shape", "rank", "k", "retained energy"] + experts.map { "error \($0.name)" }, modules.map { m in
            [m.name, "\(m.rows)×\(m.columns)", "\(m.rank)", "\(m.k)", HTMLPage.number(m.retainedEnergy)] + m.errors.map(HTMLPage.precise)
        }, text: [0, 1])
        out += String(format: "<p>View: task arithmetic (λ = %@) of the rebuilt experts at rank %d, keeping %.1f%% of its energy.</p>\n",
                      HTMLPage.number(viewLambda), viewRank, 100 * viewRetainedEnergy)
        out += "<h2>Recipe</h2>\n<pre>\(HTMLPage.escape(recipe))</pre>\n</body></html>\n"
        return out
    }
}
