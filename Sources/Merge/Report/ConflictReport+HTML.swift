import Foundation

extension ConflictReport {
    /// One self-contained HTML page: the summary, an SVG heatmap of conflicting mass per layer and
    /// module, the worst tensors and the per-layer aggregates. No script, no network.
    public func html(title: String, recipe: String) -> String {
        var out = HTMLPage.head(title: title)
        out += "<p>Method <b>\(escape(method))</b>, experts \(experts.map { "<b>\(escape($0))</b>" }.joined(separator: ", ")), merge base <b>\(escape(baseName.count == 64 ? String(baseName.prefix(12)) : baseName))</b>.</p>\n"
        let counts = classCounts
        out += "<table><tr>" + MergeClass.allCases.map { "<th>\($0.rawValue)</th>" }.joined() + "<th>unresolved</th></tr><tr>"
        out += MergeClass.allCases.map { "<td>\(counts[$0] ?? 0)</td>" }.joined()
        out += "<td class=\"\(unresolved.isEmpty ? "" : "bad")\">\(unresolved.count)</td></tr></table>\n"
        out += heatmapSVG()
        out += "<h2>Most conflicting tensors</h2>\n<table><tr><th class=\"l\">tensor</th><th>class</th><th>min cos</th><th>sign conflict</th><th>conflicting mass</th><th>norm ratio</th><th>TALL none / one / shared</th><th class=\"l\">status</th></tr>\n"
        for t in topConflicts(25) {
            let m = t.metrics
            out += "<tr><td class=\"l\">\(escape(t.name))</td><td>\(t.mergeClass.rawValue)</td><td>\(f(m?.minCosine))</td><td>\(f(m?.signConflict))</td>"
            out += "<td>\(f(m?.conflictingMass))</td><td>\(f(m?.normRatio))</td>"
            out += "<td>\(m.map { "\(f($0.tallNone)) / \(f($0.tallOne)) / \(f($0.tallShared))" } ?? "-")</td>"
            out += "<td class=\"l \(t.conflict != nil && t.resolution == nil ? "bad" : "")\">\(escape(t.resolution.map { "resolved: \($0)" } ?? t.conflict ?? "merged"))</td></tr>\n"
        }
        out += "</table>\n<h2>Per layer</h2>\n<table><tr><th class=\"l\">layer</th><th>tensors</th><th>merged</th><th>sign conflict</th><th>conflicting mass</th><th>min cos</th><th>TALL none</th><th>unresolved</th></tr>\n"
        for l in layers {
            out += "<tr><td class=\"l\">\(l.layer.map(String.init) ?? "outside blocks")</td><td>\(l.tensors)</td><td>\(l.merged)</td><td>\(f(l.signConflict))</td>"
            out += "<td>\(f(l.conflictingMass))</td><td>\(f(l.minCosine))</td><td>\(f(l.tallNone))</td><td class=\"\(l.unresolved > 0 ? "bad" : "")\">\(l.unresolved)</td></tr>\n"
        }
        out += "</table>\n"
        if !files.isEmpty {
            out += "<h2>Other files</h2>\n<table><tr><th class=\"l\">file</th><th class=\"l\">outcome</th></tr>\n"
            for file in files { out += "<tr><td class=\"l\">\(escape(file.path))</td><td class=\"l\">\(escape(file.outcome))</td></tr>\n" }
            out += "</table>\n"
        }
        let resolved = tensors.filter { $0.resolution != nil }
        if !resolved.isEmpty {
            out += "<h2>Resolutions</h2>\n<table><tr><th class=\"l\">tensor</th><th class=\"l\">why it stopped</th><th class=\"l\">settled with</th></tr>\n"
            for t in resolved {
                out += "<tr><td class=\"l\">\(escape(t.name))</td><td class=\"l\">\(escape(t.conflict ?? "-"))</td><td class=\"l\">\(escape(t.resolution ?? ""))</td></tr>\n"
            }
            out += "</table>\n"
        }
        out += "<h2>Recipe</h2>\n<pre>\(escape(recipe))</pre>\n"
        out += "<p class=\"legend\">Definitions: cos is the cosine between two experts' task vectors (θᵢ − θ₀); sign conflict is the share of elements, among those at least two experts change, where the changes have both signs; conflicting mass is the share of update magnitude whose sign disagrees with the elected sign (what TIES discards); TALL none / one / shared are the shares of elements that no expert, exactly one, or several experts' TALL masks select.</p>\n"
        out += "</body></html>\n"
        return out
    }

    /// Rows: layers; columns: modules; colour: conflicting mass of merged tensors.
    func heatmapSVG() -> String {
        let inLayers = tensors.filter { $0.layer != nil }
        guard !inLayers.isEmpty else { return "<p>No tensor lies inside a transformer block; no heatmap.</p>\n" }
        let modules = Array(Set(inLayers.map(\.module))).sorted()
        let layerIDs = Array(Set(inLayers.compactMap(\.layer))).sorted()
        let maxMass = max(inLayers.compactMap { $0.metrics?.conflictingMass }.max() ?? 0, 1e-9)
        let cell = 22, labelWidth = 70, headerHeight = 190
        let width = labelWidth + modules.count * cell + 20, height = headerHeight + layerIDs.count * cell + 50
        var svg = "<h2>Conflict heatmap (conflicting mass; darker is worse, grey is not merged, a black frame is unresolved)</h2>\n"
        svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" font-family=\"sans-serif\" font-size=\"11\">\n"
        for (c, module) in modules.enumerated() {
            let x = labelWidth + c * cell + cell / 2
            svg += "<text transform=\"translate(\(x),\(headerHeight - 6)) rotate(-60)\">\(escape(module))</text>\n"
        }
        let byKey = Dictionary(inLayers.map { ("\($0.layer!)|\($0.module)", $0) }, uniquingKeysWith: { a, _ in a })
        for (r, layer) in layerIDs.enumerated() {
            let y = headerHeight + r * cell
            svg += "<text x=\"\(labelWidth - 6)\" y=\"\(y + 15)\" text-anchor=\"end\">layer \(layer)</text>\n"
            for (c, module) in modules.enumerated() {
                let x = labelWidth + c * cell
                guard let t = byKey["\(layer)|\(module)"] else { continue }
                let fill: String
                var tip = "layer \(layer) \(module): \(t.mergeClass.rawValue)"
                if let m = t.metrics {
                    fill = heatColour(min(1, m.conflictingMass / maxMass))
                    tip += String(format: ", conflicting mass %.3f, sign conflict %.3f", m.conflictingMass, m.signConflict)
                    if let cos = m.minCosine { tip += String(format: ", min cos %.3f", cos) }
                } else {
                    fill = "#e4e4e4"
                }
                let unresolved = t.conflict != nil && t.resolution == nil
                if let reason = t.conflict { tip += " — \(reason)" }
                svg += "<rect x=\"\(x + 1)\" y=\"\(y + 1)\" width=\"\(cell - 2)\" height=\"\(cell - 2)\" fill=\"\(fill)\""
                svg += unresolved ? " stroke=\"black\" stroke-width=\"2\"" : ""
                svg += "><title>\(escape(tip))</title></rect>\n"
            }
        }
        let legendY = headerHeight + layerIDs.count * cell + 20
        for i in 0...10 {
            svg += "<rect x=\"\(labelWidth + i * 18)\" y=\"\(legendY)\" width=\"18\" height=\"12\" fill=\"\(heatColour(Double(i) / 10))\"/>\n"
        }
        svg += "<text x=\"\(labelWidth + 11 * 18 + 6)\" y=\"\(legendY + 10)\">0 … \(String(format: "%.3f", maxMass))</text>\n"
        svg += "</svg>\n"
        return svg
    }

    /// The heatmap's colour for a conflicting mass `v` in [0, 1] (white to red).
    private func heatColour(_ v: Double) -> String {
        "rgb(255,\(Int(255 - 200 * v)),\(Int(255 - 230 * v)))"
    }

    private func f(_ x: Double?) -> String { HTMLPage.number(x) }

    private func escape(_ s: String) -> String { HTMLPage.escape(s) }
}
