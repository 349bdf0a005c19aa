import Foundation
import Testing

/// A killed clone resumes: the next clone into the same destination takes over the objects the
/// killed one had received and verified (checked again) instead of downloading them again.
@Suite struct CloneResumeCLITests {
    /// A sandbox with the family's repository (main and `branches`) in `repo`, and what a whole
    /// clone of it (into `reference`) reports.
    func repositoryAndWholeClone(branches: [String] = ["math", "code"]) throws -> (CLISandbox, [String: Any]) {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: branches)
        return (s, try #require(try s.json(try s.ok(["clone", "--json", "repo", "reference"])) as? [String: Any]))
    }

    @Test func aKilledCloneResumesWithoutResendingWhatArrived() throws {
        let (s, whole) = try repositoryAndWholeClone()
        let all = try #require(whole["bytes_received"] as? Int)

        let killed = try s.run(["clone", "repo", "copy"], environment: ["MREPO_KILL_AT": "transfer.object-received:20"])
        #expect(killed.status == -9, "the kill point was not reached: \(killed.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.path("copy")))
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).contains { $0.hasPrefix(".copy.mrepo-clone-") })

        let resumed = try #require(try s.json(try s.ok(["clone", "--json", "repo", "copy"])) as? [String: Any])
        let received = try #require(resumed["bytes_received"] as? Int)
        #expect(received < all, "the resumed clone received \(received) bytes of \(all)")
        #expect(resumed["objects"] as? Int ?? 0 < whole["objects"] as? Int ?? 0)
        // Nothing of the killed clone is left, and the clone is whole.
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.contains(".mrepo-clone-") || $0.hasPrefix(".mrepo-tmp-") }.isEmpty)
        try s.ok(["fsck"], in: "copy")
        #expect(s.sameFiles("copy", "family/base"))
        for branch in ["math", "code"] {
            try s.ok(["export", "-q", "origin/\(branch)", s.path("out-\(branch)")], in: "copy")
            #expect(s.sameFiles("out-\(branch)", "family/\(branch)"))
        }
    }

    /// A clone killed again while it resumes leaves one staging folder, not one per try: each try
    /// moves what the killed ones received into its own store and deletes their folders. The last
    /// try verifies the objects found whole without asking for them (`objects_skipped`).
    @Test func aCloneKilledAgainAndAgainLeavesOneFolder() throws {
        let (s, whole) = try repositoryAndWholeClone()
        let all = try #require(whole["bytes_received"] as? Int)
        func staging() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.hasPrefix(".copy.mrepo-clone-") }
        }
        for at in [20, 10, 10] {
            let killed = try s.run(["clone", "repo", "copy"], environment: ["MREPO_KILL_AT": "transfer.object-received:\(at)"])
            #expect(killed.status == -9, "the kill point was not reached: \(killed.stderr)")
            let folders = try staging()
            #expect(folders.count == 1, "staging folders after a kill: \(folders)")
        }
        let resumed = try #require(try s.json(try s.ok(["clone", "--json", "repo", "copy"])) as? [String: Any])
        let received = try #require(resumed["bytes_received"] as? Int)
        #expect(received < all, "the resumed clone received \(received) bytes of \(all)")
        #expect(resumed["objects_skipped"] as? Int ?? 0 >= 40, "objects found whole: \(resumed)")
        #expect(try staging().isEmpty)
        try s.ok(["fsck"], in: "copy")
        #expect(s.sameFiles("copy", "family/base"))
    }

    /// A lazy clone into a folder where a whole clone was killed keeps what it took over for the
    /// objects it records without a file, and its first reads of them count them as skipped.
    @Test func aLazyCloneKeepsWhatAKilledCloneReceivedForLaterReads() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math", "code"])
        let killed = try s.run(["clone", "repo", "copy"], environment: ["MREPO_KILL_AT": "transfer.object-received:60"])
        #expect(killed.status == -9, "the kill point was not reached: \(killed.stderr)")
        let clone = try #require(try s.json(try s.ok(["clone", "--lazy", "--json", "repo", "copy"])) as? [String: Any])
        #expect(clone["objects_skipped"] as? Int ?? 0 > 0, "the checkout's objects found whole: \(clone)")
        let kept = (try? FileManager.default.contentsOfDirectory(atPath: s.path("copy/.mrepo/objects/partial"))) ?? []
        #expect(!kept.isEmpty, "the objects of other branches the killed clone received were deleted")
        let read = try #require(try s.json(try s.ok(["fetch", "--objects", "origin/code", "--json"], in: "copy")) as? [String: Any])
        #expect(read["objects_skipped"] as? Int ?? 0 > 0, "found whole: \(read)")
        try s.ok(["export", "-q", "origin/code", s.path("out")], in: "copy")
        #expect(s.sameFiles("out", "family/code"))
        try s.ok(["fsck"], in: "copy")
    }

    /// `fsck` while a fetch runs does not call the fetch's object files leftovers of an interrupted
    /// command: it names the running writer's pid.
    @Test func fsckDuringAFetchNamesTheRunningWriter() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math"])
        try s.ok(["init", "-q", "copy"])
        try s.ok(["remote", "add", "origin", "../repo"], in: "copy")
        let fetch = try RunningCommand(s, ["fetch", "-q", "origin"], in: "copy",
                                       environment: ["MREPO_TRANSFER_BATCH_SECONDS": "0", "MREPO_PAUSE_AT": "transfer.object-received:3"])
        #expect(fetch.waitUntilPaused(at: "transfer.object-received"))
        let during = try s.ok(["fsck"], in: "copy")
        let pid = fetch.process.processIdentifier
        let said = during.stdout + during.stderr
        #expect(said.contains("unreferenced object files (written by pid \(pid), an mrepo command still running;"), "fsck: \(said)")
        fetch.resume()
        #expect(fetch.finish().status == 0)
        let after = try s.ok(["fsck"], in: "copy")
        #expect(!(after.stdout + after.stderr).contains("unreferenced"), "fsck: \(after.stdout)")
    }

    /// A batch of received objects is made durable once it has been open for the batch interval
    /// (`MREPO_TRANSFER_BATCH_SECONDS`), not only at a level's end: a clone killed while the base's
    /// objects arrive keeps what was installed. With an interval of 0 every object is its own batch.
    @Test func aCloneKilledBeforeALevelEndsKeepsWhatWasInstalled() throws {
        let (s, whole) = try repositoryAndWholeClone(branches: ["math"])
        let all = try #require(whole["bytes_received"] as? Int)

        let clone = try RunningCommand(s, ["clone", "-q", "repo", "copy"], in: ".",
                                       environment: ["MREPO_TRANSFER_BATCH_SECONDS": "0", "MREPO_PAUSE_AT": "transfer.object-received"])
        #expect(clone.waitUntilPaused(at: "transfer.object-received"))
        let staging = try #require(try FileManager.default.contentsOfDirectory(atPath: s.root).first { $0.hasPrefix(".copy.mrepo-clone-") })
        let installed = try FileManager.default.subpathsOfDirectory(atPath: s.path(staging + "/.mrepo/objects"))
            .filter { $0.split(separator: "/").count == 2 && $0.split(separator: "/")[0].count == 2 && !$0.contains(".mrepo-tmp") }
        #expect(installed.count == 1, "the first batch holds \(installed.count) objects")
        kill(clone.process.processIdentifier, SIGKILL)
        #expect(clone.finish().status == -9)

        let resumed = try #require(try s.json(try s.ok(["clone", "--json", "repo", "copy"])) as? [String: Any])
        let received = try #require(resumed["bytes_received"] as? Int)
        #expect(received < all, "the resumed clone received \(received) bytes of \(all)")
        try s.ok(["fsck"], in: "copy")
        #expect(s.sameFiles("copy", "family/base"))
    }

    /// A clone killed inside an object continues that object where it broke off, over a folder and
    /// over `mrepo serve` (a ranged GET): the objects' first bytes are not sent again, and nothing
    /// of the killed clone is left once the clone is whole.
    @Test func aCloneKilledInsideAnObjectContinuesIt() throws {
        let s = try CLISandbox()
        try s.servedIncompressibleModel()
        let server = try ServerProcess(s, ["served"])
        defer { _ = server.stop() }
        // A folder is copied a MiB at a time, a server's answer arrives in pieces of a few KiB.
        for (label, url, piece) in [("folder", s.path("served/team/big"), 4), ("serve", server.url + "/team/big", 40)] {
            let whole = try #require(try s.json(try s.ok(["clone", "--json", url, "whole-" + label])) as? [String: Any])
            let all = try #require(whole["bytes_received"] as? Int)
            let killed = try s.run(["clone", url, "copy-" + label], environment: ["MREPO_KILL_AT": "transfer.object-partial:\(piece)"])
            #expect(killed.status == -9, "\(label): the kill point was not reached: \(killed.stderr)")
            let resumed = try #require(try s.json(try s.ok(["clone", "--json", url, "copy-" + label])) as? [String: Any])
            let received = try #require(resumed["bytes_received"] as? Int)
            #expect(received < all - 50_000, "\(label): the resumed clone received \(received) bytes of \(all)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.contains(".mrepo-clone-") || $0.hasPrefix(".mrepo-tmp-") }.isEmpty)
            #expect(((try? FileManager.default.contentsOfDirectory(atPath: s.path("copy-\(label)/.mrepo/objects/partial"))) ?? []).isEmpty)
            let fsck = try s.ok(["fsck"], in: "copy-" + label)
            #expect(!fsck.stdout.contains("warning") && !fsck.stderr.contains("warning"), "\(fsck.stdout)\(fsck.stderr)")
            #expect(s.sameFiles("copy-" + label, "big"))
        }
    }

    /// Objects killed after their last byte arrived but before they were verified (verification is
    /// slower than a fast link), or verified but not yet installed with their batch, are kept whole:
    /// the next clone verifies them without downloading them.
    @Test(arguments: ["transfer.object-downloaded", "transfer.object-verified:6"])
    func anObjectKilledBeforeItIsStoredIsNotDownloadedAgain(_ point: String) throws {
        let (s, reference) = try repositoryAndWholeClone(branches: ["math"])
        let all = try #require(reference["bytes_received"] as? Int)
        let killed = try s.run(["clone", "repo", "copy"], environment: ["MREPO_KILL_AT": point])
        #expect(killed.status == -9, "the kill point was not reached: \(killed.stderr)")
        let staging = try #require(try FileManager.default.contentsOfDirectory(atPath: s.root).first { $0.hasPrefix(".copy.mrepo-clone-") })
        let partial = s.path(staging + "/.mrepo/objects/partial")
        // Every byte kept is not sent again: whole objects and the beginnings of those in flight.
        var kept = 0, whole = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: partial) {
            let size = try #require(FileManager.default.attributesOfItem(atPath: partial + "/" + name)[.size] as? Int)
            let stored = try FileManager.default.attributesOfItem(atPath: s.path("repo/.mrepo/objects/\(name.prefix(2))/\(name.dropFirst(2))"))[.size] as? Int
            kept += size
            if size == stored { whole += 1 }
        }
        #expect(whole >= (point.hasSuffix(":6") ? 6 : 1), "\(whole) whole objects kept")
        let resumed = try #require(try s.json(try s.ok(["clone", "--json", "repo", "copy"])) as? [String: Any])
        #expect(resumed["bytes_received"] as? Int == all - kept)
        try s.ok(["fsck"], in: "copy")
        #expect(s.sameFiles("copy", "family/base"))
    }

    /// A clone that fails on the transfer (here the remote lacks an object) keeps what it received,
    /// under partial names in its hidden folder, and the next clone takes it over; one refused for a
    /// damaged object keeps nothing.
    @Test func aFailedCloneKeepsWhatItReceivedForTheNext() throws {
        let (s, reference) = try repositoryAndWholeClone(branches: ["math"])
        let all = try #require(reference["bytes_received"] as? Int)
        let objects = s.path("repo/.mrepo/objects")
        let sub = try #require(try FileManager.default.contentsOfDirectory(atPath: objects).sorted().first { $0.count == 2 })
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: objects + "/" + sub).first)
        let file = objects + "/" + sub + "/" + name
        try FileManager.default.moveItem(atPath: file, toPath: s.path("aside"))
        expectOneLineError(try s.run(["clone", "repo", "copy"]), contains: String((sub + name).prefix(12)))
        #expect(!FileManager.default.fileExists(atPath: s.path("copy")))
        let staging = try #require(try FileManager.default.contentsOfDirectory(atPath: s.root).first { $0.hasPrefix(".copy.mrepo-clone-") })
        #expect(try FileManager.default.subpathsOfDirectory(atPath: s.path(staging)).filter { !$0.hasPrefix(".mrepo/objects/partial") }.sorted()
            == [".mrepo", ".mrepo/objects"])
        let kept = try FileManager.default.subpathsOfDirectory(atPath: s.path(staging + "/.mrepo/objects/partial"))
            .reduce(0) { $0 + ((try FileManager.default.attributesOfItem(atPath: s.path(staging + "/.mrepo/objects/partial/" + $1))[.size] as? Int) ?? 0) }
        #expect(kept > 0)
        try FileManager.default.moveItem(atPath: s.path("aside"), toPath: file)
        let resumed = try #require(try s.json(try s.ok(["clone", "--json", "repo", "copy"])) as? [String: Any])
        #expect(resumed["bytes_received"] as? Int == all - kept)
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.contains(".mrepo-clone-") }.isEmpty)
        try s.ok(["fsck"], in: "copy")
        #expect(s.sameFiles("copy", "family/base"))
    }

    /// A destination that another process fills while the clone runs (a second clone into the
    /// same folder) is not overwritten: the clone fails in one line and leaves nothing of its own.
    @Test func aDestinationFilledMeanwhileIsLeftAlone() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: [])
        let clone = try RunningCommand(s, ["clone", "-q", "repo", "copy"], in: ".", environment: ["MREPO_PAUSE_AT": "clone.before-rename"])
        #expect(clone.waitUntilPaused(at: "clone.before-rename"))
        try FileManager.default.createDirectory(atPath: s.path("copy"), withIntermediateDirectories: true)
        try "theirs\n".write(toFile: s.path("copy/note.txt"), atomically: false, encoding: .utf8)
        clone.resume()
        let r = clone.finish()
        #expect(r.status == 2)
        #expect(r.stderr.hasSuffix("was filled by another process while this clone ran; nothing of this clone was kept\n"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path("copy")) == ["note.txt"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.contains(".mrepo-clone-") }.isEmpty)
    }

    /// A damaged file among what the killed clone received is not taken over: it is downloaded.
    @Test func aDamagedObjectOfAKilledCloneIsDownloadedAgain() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math"])
        let killed = try s.run(["clone", "repo", "copy"], environment: ["MREPO_KILL_AT": "transfer.object-received:20"])
        #expect(killed.status == -9)
        let staging = try #require(try FileManager.default.contentsOfDirectory(atPath: s.root).first { $0.hasPrefix(".copy.mrepo-clone-") })
        let objects = s.path(staging + "/.mrepo/objects")
        var damaged = 0
        for sub in try FileManager.default.contentsOfDirectory(atPath: objects).sorted() where sub.count == 2 {
            for name in try FileManager.default.contentsOfDirectory(atPath: objects + "/" + sub) where !name.hasPrefix(".") && damaged < 3 {
                let handle = try FileHandle(forUpdating: URL(fileURLWithPath: objects + "/" + sub + "/" + name))
                let size = try handle.seekToEnd()
                try handle.seek(toOffset: size / 2)
                let byte = try handle.read(upToCount: 1) ?? Data([0])
                try handle.seek(toOffset: size / 2)
                try handle.write(contentsOf: Data([byte[0] ^ 0x5A]))
                try handle.close()
                damaged += 1
            }
        }
        #expect(damaged == 3)
        try s.ok(["clone", "-q", "repo", "copy"])
        try s.ok(["fsck"], in: "copy")
        #expect(s.sameFiles("copy", "family/base"))
        try s.ok(["export", "-q", "origin/math", s.path("out")], in: "copy")
        #expect(s.sameFiles("out", "family/math"))
    }

    /// A folder named as a killed clone's whose store is a link to another repository's is not
    /// taken from: files are moved out of a killed clone's folder, never through a link.
    @Test func aLinkedStoreIsNotTakenFrom() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: [])
        try s.ok(["init", "-q", "other"])
        try s.ok(["commit", "-q", "--from", "../family/math", "-m", "math"], in: "other")
        let before = try FileManager.default.subpathsOfDirectory(atPath: s.path("other/.mrepo/objects")).sorted()
        // pid 2^22 + 1 is above Linux's pid_max: no such process.
        let planted = s.path(".copy.mrepo-clone-4194305")
        try FileManager.default.createDirectory(atPath: planted + "/.mrepo", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: planted + "/.mrepo/objects", withDestinationPath: s.path("other/.mrepo/objects"))
        try s.ok(["clone", "-q", "repo", "copy"])
        #expect(try FileManager.default.subpathsOfDirectory(atPath: s.path("other/.mrepo/objects")).sorted() == before)
        try s.ok(["fsck"], in: "other")
        try s.ok(["fsck"], in: "copy")
    }

    /// What a killed clone had received is used only where it verifies: here another repository,
    /// which stores math's tensors whole where the killed clone's were deltas against base (taking
    /// those failed the clone on a missing reference), and nothing the new clone does not record is
    /// left, object or partial file. A clone that fails keeps the killed clone's folder for the
    /// next try.
    @Test func anotherRepositoryIntoTheSameFolder() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math", "code"])
        try s.ok(["init", "-q", "other"])
        try s.ok(["commit", "-q", "--from", "../family/math", "-m", "math"], in: "other")
        let killed = try s.run(["clone", "repo", "copy"], environment: ["MREPO_KILL_AT": "transfer.object-received:80"])
        #expect(killed.status == -9)
        expectOneLineError(try s.run(["clone", "no-such-folder", "copy"]), contains: "no-such-folder")
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).contains { $0.hasPrefix(".copy.mrepo-clone-") }, "kept for the next try")
        try s.ok(["clone", "-q", "other", "copy"])
        let fsck = try s.ok(["fsck"], in: "copy")
        #expect(!(fsck.stdout + fsck.stderr).contains("warning"), "\(fsck.stdout)\(fsck.stderr)")
        let partial = (try? FileManager.default.contentsOfDirectory(atPath: s.path("copy/.mrepo/objects/partial"))) ?? []
        #expect(partial.isEmpty, "\(partial.count) partial files left in the clone")
        #expect(s.sameFiles("copy", "family/math"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.contains(".mrepo-clone-") }.isEmpty)
    }
}

/// A download holds each received object's file open until its batch is installed. A clone of
/// hundreds of small objects works under a low limit on open files: mrepo raises the soft limit to
/// the hard one, and below a low hard limit it waits for installs before it takes more objects.
@Suite struct OpenFileLimitCLITests {
    @Test(arguments: ["ulimit -S -n 96", "ulimit -n 40"])
    func aCloneOfManySmallObjectsStaysWithinTheOpenFileLimit(limit: String) throws {
        let s = try CLISandbox()
        var generator = SystemRandomNumberGenerator()
        // 400 tensors of distinct content: 400 objects, one level, far more than 96 files.
        let tensors = (0..<400).map { i in ("layer.\(i).weight", [64], (0..<64).map { _ in Float.random(in: -1...1, using: &generator) }) }
        try s.writeModel("model", tensors)
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../model", "-m", "many"], in: "repo")
        let clone = try s.run(["clone", "-q", "repo", "copy"], after: limit)
        #expect(clone.status == 0, "clone under '\(limit)': \(clone.stderr)")
        try s.ok(["fsck"], in: "copy")
        #expect(s.sameFiles("copy", "model"))
    }

    /// Below 32 open files (the hard limit), any command stops at once with one line saying so;
    /// a low soft limit alone is raised (to at most 1024) and the command runs.
    @Test func aTinyOpenFileLimitIsRefusedInOneLine() throws {
        let s = try CLISandbox()
        try s.ok(["init", "-q", "repo"])
        expectOneLineError(try s.run(["status"], in: "repo", after: "ulimit -n 20"),
                           contains: "this process may open only 20 files, and mrepo needs at least 32: raise the limit with 'ulimit -n'")
        try s.ok(["status"], in: "repo")
        #expect(try s.run(["status"], in: "repo", after: "ulimit -S -n 16").status == 0)
    }
}
