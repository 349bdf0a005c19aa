import Foundation
import Testing

/// `branch -vv` shows each branch's upstream and how far each side is ahead, as git does.
@Suite struct BranchTrackingCLITests {
    @Test func branchVeryVerboseShowsTheUpstreamAndCounts() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "origin"])
        try s.ok(["commit", "--from", s.path("family/base"), "-m", "base"], in: "origin")
        try s.ok(["clone", s.path("origin"), "copy"])
        let fresh = try s.ok(["branch", "-vv"], in: "copy").stdout
        #expect(fresh.contains("[origin/main] base"), "got: \(fresh)")

        try s.ok(["commit", "--from", s.path("family/math"), "-m", "math"], in: "copy")
        try s.ok(["switch", "-c", "side"], in: "copy")
        let ahead = try s.ok(["branch", "-vv"], in: "copy").stdout
        #expect(ahead.contains("main") && ahead.contains("[origin/main: ahead 1] math"), "got: \(ahead)")
        // A branch without an upstream gets no bracket; plain -v stays as before.
        #expect(ahead.split(separator: "\n").contains { $0.contains("side") && !$0.contains("[") })
        #expect(!(try s.ok(["branch", "-v"], in: "copy").stdout.contains("[origin/main")))
    }
}
