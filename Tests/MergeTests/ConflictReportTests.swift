import Delta
import Foundation
import Testing

@testable import Merge

/// The whole-merge report: aggregates, JSON and the self-contained HTML page.
@Suite struct ConflictReportTests {
    func metrics(signConflict: Double, conflictingMass: Double, cosine: Double?, tallNone: Double = 0) -> ConflictMetrics {
        var m = ConflictMetrics()
        m.signConflict = signConflict
        m.conflictingMass = conflictingMass
        m.cosines = [cosine]
        m.taskVectorNorms = [1, 2]
        m.tallNone = tallNone
        return m
    }

    func sampleReport() -> ConflictReport {
        var q0 = TensorReport(name: "model.layers.0.self_attn.q_proj.weight", mergeClass: .merged, elementCount: 100)
        q0.metrics = metrics(signConflict: 0.2, conflictingMass: 0.1, cosine: 0.5, tallNone: 0.1)
        var m0 = TensorReport(name: "model.layers.0.mlp.up_proj.weight", mergeClass: .merged, elementCount: 300)
        m0.metrics = metrics(signConflict: 0.6, conflictingMass: 0.3, cosine: -0.2, tallNone: 0.3)
        var q1 = TensorReport(name: "model.layers.1.self_attn.q_proj.weight", mergeClass: .merged, elementCount: 100)
        q1.metrics = metrics(signConflict: 0.1, conflictingMass: 0.05, cosine: 0.9)
        var bad = TensorReport(name: "model.layers.1.mlp.up_proj.weight", mergeClass: .conflict, elementCount: 300)
        bad.conflict = "shape changed on both sides: [300] vs [310]"
        var settled = TensorReport(name: "model.layers.1.mlp.down_proj.weight", mergeClass: .conflict, elementCount: 300)
        settled.conflict = "deleted on one side, changed on another <script>x</script>"
        settled.resolution = "theirs:code"
        let embed = TensorReport(name: "model.embed_tokens.weight", mergeClass: .oneSided, elementCount: 800, source: "math")
        let norm = TensorReport(name: "model.norm.weight", mergeClass: .unchanged, elementCount: 8)
        var odd = TensorReport(name: "weird<script>&\"name\"", mergeClass: .added, elementCount: 1, source: "code")
        odd.remarks = ["added on one side"]
        return ConflictReport(method: "ties", experts: ["math", "code"], baseName: "main",
                              tensors: [q0, m0, q1, bad, settled, embed, norm, odd],
                              files: [(path: "config.json", outcome: "taken from math"), (path: "notes<&>.txt", outcome: "unchanged")])
    }

    @Test func moduleNames() {
        #expect(TensorReport.module(of: "model.layers.3.self_attn.q_proj.weight") == "self_attn.q_proj.weight")
        #expect(TensorReport.module(of: "bert.encoder.layer.2.attention.self.query.weight") == "attention.self.query.weight")
        #expect(TensorReport.module(of: "lm_head.weight") == "lm_head.weight")
        let t = TensorReport(name: "transformer.h.7.mlp.c_fc.weight", mergeClass: .merged, elementCount: 1)
        #expect(t.layer == 7 && t.module == "mlp.c_fc.weight")
    }

    @Test func countsUnresolvedAndWorstFirst() {
        let r = sampleReport()
        #expect(r.classCounts[.merged] == 3)
        #expect(r.classCounts[.conflict] == 2)
        #expect(r.classCounts[.oneSided] == 1)
        #expect(r.classCounts[.deleted] == nil)
        #expect(r.unresolved.map(\.name) == ["model.layers.1.mlp.up_proj.weight"])
        // Severity: an unmeasured conflict is 1; otherwise max(conflicting mass, sign conflict / 2).
        #expect(r.topConflicts(10).map(\.name) == [
            "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight",
            "model.layers.0.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight",
            "model.layers.1.self_attn.q_proj.weight",
        ])
        #expect(r.topConflicts(1).count == 1)
    }

    /// Per-layer aggregates are weighted by element count over the merged tensors.
    @Test func layerSummaries() throws {
        let layers = sampleReport().layers
        #expect(layers.map(\.layer) == [0, 1, nil])
        let l0 = layers[0]
        #expect(l0.tensors == 2 && l0.merged == 2 && l0.elements == 400 && l0.unresolved == 0)
        #expect(abs(l0.signConflict - (0.2 * 100 + 0.6 * 300) / 400) < 1e-12)
        #expect(abs(l0.conflictingMass - (0.1 * 100 + 0.3 * 300) / 400) < 1e-12)
        #expect(abs(l0.tallNone - (0.1 * 100 + 0.3 * 300) / 400) < 1e-12)
        #expect(l0.minCosine == -0.2)
        let l1 = layers[1]
        #expect(l1.tensors == 3 && l1.merged == 1 && l1.elements == 100 && l1.unresolved == 1)
        #expect(l1.minCosine == 0.9)
        let outside = layers[2]
        #expect(outside.tensors == 3 && outside.merged == 0 && outside.minCosine == nil)
    }

    @Test func jsonReport() throws {
        let r = sampleReport()
        let parsed = try JSONValue.parse(Array(r.json.serialized().utf8))
        #expect(parsed["method"]?.stringValue == "ties")
        #expect(parsed["experts"] == .array([.string("math"), .string("code")]))
        #expect(parsed["base"]?.stringValue == "main")
        #expect(parsed["classes"]?["merged"]?.intValue == 3)
        #expect(parsed["classes"]?["deleted"]?.intValue == 0)
        #expect(parsed["classes"]?.objectValue?.map(\.key) == MergeClass.allCases.map(\.rawValue))
        let unresolved = try #require(parsed["unresolved"]?.arrayValue)
        #expect(unresolved.count == 1)
        #expect(unresolved[0]["reason"]?.stringValue == "shape changed on both sides: [300] vs [310]")
        #expect(parsed["files"]?.arrayValue?.count == 2)
        #expect(parsed["layers"]?.arrayValue?.count == 3)
        #expect(parsed["layers"]?.arrayValue?[2]["layer"] == .null)
        #expect(parsed["top_conflicts"]?.arrayValue?.first?.stringValue == "model.layers.1.mlp.up_proj.weight")
        let tensors = try #require(parsed["tensors"]?.arrayValue)
        #expect(tensors.count == 8)
        let m0 = tensors[1]
        #expect(m0["class"]?.stringValue == "merged" && m0["layer"]?.intValue == 0 && m0["elements"]?.intValue == 300)
        #expect(m0["metrics"]?["sign_conflict"]?.doubleValue == 0.6)
        #expect(m0["metrics"]?["cosines"]?.arrayValue?.map(\.doubleValue) == [-0.2])
        #expect(m0["metrics"]?["tall"]?["none"]?.doubleValue == 0.3)
        #expect(m0["metrics"]?["norm_ratio"]?.doubleValue == 2)
        #expect(tensors[4]["resolution"]?.stringValue == "theirs:code")
        #expect(tensors[5]["source"]?.stringValue == "math")
        #expect(tensors[7]["remarks"] == .array([.string("added on one side")]))
        #expect(tensors[5]["metrics"] == nil)
    }

    @Test func metricsJSONCarriesKeptFractionAndNotes() throws {
        var t = TensorReport(name: "model.layers.0.mlp.weight", mergeClass: .merged, elementCount: 4)
        var m = metrics(signConflict: 0, conflictingMass: 0, cosine: nil)
        m.keptFraction = [0.5, 0.25]
        m.notes = ["t": 0.75]
        t.metrics = m
        let r = ConflictReport(method: "dare_ties", experts: ["a", "b"], baseName: "base", tensors: [t], files: [])
        let parsed = try JSONValue.parse(Array(r.json.serialized().utf8))
        let metrics = try #require(parsed["tensors"]?.arrayValue?.first?["metrics"])
        #expect(metrics["kept_fraction"]?.arrayValue?.compactMap(\.doubleValue) == [0.5, 0.25])
        #expect(metrics["notes"]?["t"]?.doubleValue == 0.75)
        #expect(metrics["cosines"] == .array([.null]))
        #expect(metrics["min_cosine"] == .null)
    }

    // MARK: - HTML

    /// One self-contained document: no script, no stylesheet or image links, no network address
    /// except the SVG namespace (and, were they shown, the methods' paper URLs as text).
    @Test func htmlIsOneSelfContainedDocument() {
        let html = sampleReport().html(title: "Merge <math> & code", recipe: "method: ties\nparameters: {density: 0.5}")
        #expect(html.hasPrefix("<!DOCTYPE html>"))
        #expect(html.hasSuffix("</html>\n"))
        #expect(html.components(separatedBy: "<html").count == 2)
        #expect(html.components(separatedBy: "</html>").count == 2)
        #expect(html.components(separatedBy: "<body>").count == 2)
        #expect(html.contains("<svg"))
        #expect(html.contains("</svg>"))
        let lower = html.lowercased()
        for forbidden in ["<script", "<link", "<iframe", "<img", "<object", "<embed", "href=", "src=", "url(", "@import"] {
            #expect(!lower.contains(forbidden), "\(forbidden)")
        }
        var rest = html.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "")
        for method in MethodRegistry.all { rest = rest.replacingOccurrences(of: method.paper, with: "") }
        #expect(!rest.contains("http"), "only the SVG namespace and paper URLs may mention http")
    }

    @Test func htmlEscapesNames() {
        let html = sampleReport().html(title: "Merge <math> & code", recipe: "a < b")
        #expect(html.contains("<title>Merge &lt;math&gt; &amp; code</title>"))
        #expect(html.contains("<pre>a &lt; b</pre>"))
        #expect(html.contains("notes&lt;&amp;&gt;.txt"))
        #expect(html.contains("changed on another &lt;script&gt;x&lt;/script&gt;"))
    }

    @Test func htmlShowsTheHeatmapCellsAndTables() {
        let html = sampleReport().html(title: "t", recipe: "r")
        // Two layers × three modules seen in blocks; four tensors in blocks have cells, one unresolved frame.
        #expect(html.contains(">layer 0</text>") && html.contains(">layer 1</text>"))
        #expect(html.components(separatedBy: "stroke=\"black\"").count == 2)
        #expect(html.contains("fill=\"#e4e4e4\""))  // the unmeasured conflicts are grey
        #expect(html.contains("<h2>Per layer</h2>"))
        #expect(html.contains("<td class=\"l\">outside blocks</td>"))
        #expect(html.contains("resolved: theirs:code"))
    }

    @Test func htmlWithoutBlocksHasNoHeatmap() {
        let t = TensorReport(name: "lm_head.weight", mergeClass: .unchanged, elementCount: 4)
        let html = ConflictReport(method: "linear", experts: ["a", "b"], baseName: "main", tensors: [t], files: []).html(title: "t", recipe: "")
        #expect(!html.contains("<svg"))
        #expect(html.contains("No tensor lies inside a transformer block"))
    }
}
