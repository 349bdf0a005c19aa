import Foundation

/// The search's part of the merge report (`merge --search --report FILE`, `show MERGE --report`):
/// the score trace (each trial's objective and the best so far) and the trials' scores on two tasks
/// with the Pareto front, as inline SVG: no script, no network, like the rest of the page.
public struct SearchReportHTML: Sendable {
    public struct Point: Sendable {
        public var number: Int
        public var scores: [String: Double]?
        public var status: String
        public init(number: Int, scores: [String: Double]?, status: String) {
            self.number = number
            self.scores = scores
            self.status = status
        }
    }

    public var objective: SearchObjective
    public var trials: [Point]
    public var winner: Int
    public var front: [Int]

    public init(objective: SearchObjective, trials: [Point], winner: Int, front: [Int]) {
        self.objective = objective
        self.trials = trials
        self.winner = winner
        self.front = front
    }

    /// The section, to insert into a report page before `</body>`.
    public func section() -> String {
        let failed = trials.filter { $0.scores == nil }.count
        var out = "<h2>Recipe search</h2>\n<p>\(trials.count) trials (\(failed) failed), objective <b>\(objective.rawValue)</b>, winner: trial <b>\(winner)</b>.</p>\n"
        out += traceSVG()
        let tasks = Array(Set(trials.compactMap(\.scores).flatMap(\.keys))).sorted()
        if tasks.count >= 2 {
            out += "<h2>Pareto front</h2>\n<p class=\"legend\">Each evaluated trial's scores on two tasks; the front (no trial is at least as good on every task) in orange, the winner circled.</p>\n"
            var pairs: [(String, String)] = []
            for i in tasks.indices { for j in (i + 1)..<tasks.count where pairs.count < 3 { pairs.append((tasks[i], tasks[j])) } }
            for (a, b) in pairs { out += scatterSVG(a, b) }
        }
        out += "<h2>Trials</h2>\n"
        out += HTMLPage.table(["trial", "status", objective.rawValue] + tasks, trials.map { t in
            ["\(t.number)\(t.number == winner ? " (winner)" : "")", t.status, HTMLPage.number(t.scores.flatMap(objective.scalar))]
                + tasks.map { HTMLPage.number(t.scores?[$0]) }
        }, text: [0, 1])
        return out
    }

    /// Inserts the section into a page.
    public func insert(into page: String) -> String {
        guard let r = page.range(of: "</body>", options: .backwards) else { return page + section() }
        return page.replacingCharacters(in: r, with: section() + "</body>")
    }

    func traceSVG() -> String {
        let values = trials.map { ($0.number, $0.scores.flatMap(objective.scalar)) }
        let ok = values.compactMap { $0.1 }
        guard let lo = ok.min(), let hi = ok.max() else { return "" }
        let w = 640.0, h = 220.0, pad = 40.0
        let span = hi > lo ? hi - lo : 1
        let n = max(values.count - 1, 1)
        func x(_ i: Int) -> Double { pad + Double(i) / Double(n) * (w - 2 * pad) }
        func y(_ v: Double) -> Double { h - pad - (v - lo) / span * (h - 2 * pad) }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" role=\"img\" aria-label=\"score trace\">\n"
        svg += "<rect x=\"\(pad)\" y=\"\(pad / 2)\" width=\"\(w - 2 * pad)\" height=\"\(h - 1.5 * pad)\" fill=\"none\" stroke=\"#ccc\"/>\n"
        var best = -Double.infinity
        var path: [String] = []
        for (i, v) in values.enumerated() {
            if let s = v.1 {
                best = max(best, s)
                svg += "<circle cx=\"\(f(x(i)))\" cy=\"\(f(y(s)))\" r=\"3\" fill=\"\(v.0 == winner ? "#d9480f" : "#4c6ef5")\"><title>trial \(v.0): \(HTMLPage.number(s))</title></circle>\n"
            } else {
                svg += "<text x=\"\(f(x(i)))\" y=\"\(f(h - pad + 12))\" font-size=\"10\" fill=\"#b00020\" text-anchor=\"middle\">×</text>\n"
            }
            if best.isFinite { path.append("\(f(x(i))),\(f(y(best)))") }
        }
        if !path.isEmpty { svg += "<polyline points=\"\(path.joined(separator: " "))\" fill=\"none\" stroke=\"#2b8a3e\" stroke-width=\"1.5\"/>\n" }
        svg += "<text x=\"\(pad)\" y=\"\(h - 8)\" font-size=\"11\">trial 0 … \(values.last?.0 ?? 0) (× failed); green: best so far</text>\n"
        svg += "<text x=\"4\" y=\"\(pad / 2 + 10)\" font-size=\"11\">\(HTMLPage.number(hi))</text><text x=\"4\" y=\"\(h - pad)\" font-size=\"11\">\(HTMLPage.number(lo))</text>\n"
        return svg + "</svg>\n"
    }

    func scatterSVG(_ a: String, _ b: String) -> String {
        let pts = trials.compactMap { t -> (Int, Double, Double)? in
            guard let s = t.scores, let u = s[a], let v = s[b] else { return nil }
            return (t.number, u, v)
        }
        guard let xl = pts.map(\.1).min(), let xh = pts.map(\.1).max(), let yl = pts.map(\.2).min(), let yh = pts.map(\.2).max() else { return "" }
        let w = 320.0, h = 280.0, pad = 40.0
        func x(_ v: Double) -> Double { pad + (v - xl) / (xh > xl ? xh - xl : 1) * (w - 2 * pad) }
        func y(_ v: Double) -> Double { h - pad - (v - yl) / (yh > yl ? yh - yl : 1) * (h - 2 * pad) }
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" role=\"img\" aria-label=\"\(HTMLPage.escape(a)) against \(HTMLPage.escape(b))\">\n"
        svg += "<rect x=\"\(pad)\" y=\"\(pad / 2)\" width=\"\(w - 2 * pad)\" height=\"\(h - 1.5 * pad)\" fill=\"none\" stroke=\"#ccc\"/>\n"
        let onFront = Set(front)
        let frontPts = pts.filter { onFront.contains($0.0) }.sorted { $0.1 < $1.1 }
        if frontPts.count > 1 {
            svg += "<polyline points=\"\(frontPts.map { "\(f(x($0.1))),\(f(y($0.2)))" }.joined(separator: " "))\" fill=\"none\" stroke=\"#f08c00\" stroke-dasharray=\"4 3\"/>\n"
        }
        for p in pts {
            let colour = onFront.contains(p.0) ? "#f08c00" : "#adb5bd"
            svg += "<circle cx=\"\(f(x(p.1)))\" cy=\"\(f(y(p.2)))\" r=\"3.5\" fill=\"\(colour)\"><title>trial \(p.0): \(HTMLPage.escape(a)) \(HTMLPage.number(p.1)), \(HTMLPage.escape(b)) \(HTMLPage.number(p.2))</title></circle>\n"
            if p.0 == winner { svg += "<circle cx=\"\(f(x(p.1)))\" cy=\"\(f(y(p.2)))\" r=\"7\" fill=\"none\" stroke=\"#d9480f\" stroke-width=\"2\"/>\n" }
        }
        svg += "<text x=\"\(w / 2)\" y=\"\(h - 8)\" font-size=\"11\" text-anchor=\"middle\">\(HTMLPage.escape(a))</text>\n"
        svg += "<text x=\"12\" y=\"\(h / 2)\" font-size=\"11\" transform=\"rotate(-90 12 \(h / 2))\" text-anchor=\"middle\">\(HTMLPage.escape(b))</text>\n"
        return svg + "</svg>\n"
    }

    private func f(_ v: Double) -> String { String(format: "%.1f", v) }
}
