import Delta
import Foundation
import Repo
import Testing

@Suite struct HookRunnerTests {
    func installHook(_ repo: Repository, _ name: String, _ script: String, executable: Bool = true) throws {
        try writeFile("#!/bin/sh\n" + script + "\n", to: repo.metaDirectory + "/hooks/" + name, executable: executable)
    }

    @Test func rejectingPreCommitHookAbortsTheCommitWithNothingWritten() throws {
        try withRepository { repo, _ in
            try writeFile("one", to: repo.root + "/a.txt")
            let first = try repo.commitAll("first")
            let objects = repo.objectFiles
            try installHook(repo, "pre-commit", """
                echo "$MREPO_MESSAGE|$MREPO_BRANCH|$MREPO_PARENT|$MREPO_HOOK" > "$MREPO_ROOT/.mrepo/pre-commit.seen"
                exit 1
                """)
            try writeFile("two", to: repo.root + "/a.txt")
            try writeFloats([("w", [1, 2, 3])], to: repo.root + "/m.safetensors")

            let error = thrownError { try repo.commitAll("second") }
            #expect(error as? RepoError == .hookRejected(hook: "pre-commit", status: 1))
            #expect((error as? RepoError)?.description == "pre-commit hook rejected the operation (exit status 1); nothing was written")
            #expect(try repo.headCommit() == first.commit.id)
            #expect(try repo.history.allCommits().count == 1)
            #expect(repo.objectFiles == objects)
            #expect(repo.objects.listFiles().temporary.isEmpty)
            // The hook saw the commit it was asked about.
            let seen = String(decoding: try readFile(repo.metaDirectory + "/pre-commit.seen"), as: UTF8.self)
            #expect(seen == "second|main|\(first.commit.id.hex)|pre-commit\n")
        }
    }

    /// A hook whose #! interpreter is missing was said to be missing itself ("The file doesn't
    /// exist"), and one without a #! line gave the same words.
    @Test func aHookThatCannotStartSaysWhy() throws {
        try withRepository { repo, _ in
            let path = repo.metaDirectory + "/hooks/pre-commit"
            try writeFile("#!/usr/bin/no-such-shell -e\nexit 0\n", to: path, executable: true)
            try writeFile("one", to: repo.root + "/a.txt")
            expectThrows(RepoError.io(path: path, reason: "cannot run the pre-commit hook: its interpreter '/usr/bin/no-such-shell' (its #! line) does not exist or cannot be run")) {
                _ = try repo.commitAll("first")
            }
            try writeFile("exit 0\n", to: path, executable: true)
            expectThrows(RepoError.io(path: path, reason: "cannot run the pre-commit hook: it is not a program this system runs (start a script with a #! line, such as #!/bin/sh)")) {
                _ = try repo.commitAll("first")
            }
            // Saved with Windows line endings: the #! line ends in a carriage return.
            try writeFile("#!/bin/sh\r\nexit 0\r\n", to: path, executable: true)
            expectThrows(RepoError.io(path: path, reason: "cannot run the pre-commit hook: its #! line ends in a carriage return: the file has Windows line endings (convert it, e.g. with dos2unix)")) {
                _ = try repo.commitAll("first")
            }
            #expect(try repo.headCommit() == nil)
        }
    }

    @Test func acceptingPreCommitHookLetsTheCommitThrough() throws {
        try withRepository { repo, _ in
            try installHook(repo, "pre-commit", #"test -f "$MREPO_SOURCE/a.txt""#)
            try writeFile("one", to: repo.root + "/a.txt")
            #expect(try repo.commitAll("ok").fileCount == 1)
        }
    }

    @Test func postCommitHookSeesTheNewCommit() throws {
        try withRepository { repo, _ in
            try installHook(repo, "post-commit", #"printf '%s %s' "$MREPO_COMMIT" "$MREPO_METRICS" > "$MREPO_ROOT/.mrepo/post-commit.seen""#)
            try writeFile("one", to: repo.root + "/a.txt")
            let result = try repo.commit(CommitOptions(message: "m", metrics: [.init(name: "loss", value: 0.5)], author: testAuthor))
            let seen = String(decoding: try readFile(repo.metaDirectory + "/post-commit.seen"), as: UTF8.self)
            #expect(seen == result.commit.id.hex + #" {"loss":0.5}"#)
        }
    }

    @Test func failingPostCommitHookDoesNotUndoTheCommit() throws {
        try withRepository { repo, _ in
            try installHook(repo, "post-commit", "exit 3")
            try writeFile("one", to: repo.root + "/a.txt")
            let result = try repo.commitAll("kept")
            #expect(try repo.headCommit() == result.commit.id)
        }
    }

    @Test func nonExecutableHooksAndSamplesDoNotRun() throws {
        try withRepository { repo, _ in
            try installHook(repo, "pre-commit", "exit 1", executable: false)
            #expect(FileManager.default.fileExists(atPath: repo.metaDirectory + "/hooks/pre-commit.sample"))
            try writeFile("one", to: repo.root + "/a.txt")
            #expect(try repo.commitAll("runs").fileCount == 1)
        }
    }

    @Test func hookRunnerReportsTheExitStatus() throws {
        try withTemporaryDirectory { dir in
            try writeFile("#!/bin/sh\nexit \"$CODE\"\n", to: dir + "/hook", executable: true)
            try HookRunner.run(path: dir + "/hook", name: "test", workingDirectory: dir, environment: ["CODE": "0"])
            expectThrows(RepoError.hookRejected(hook: "test", status: 42)) {
                try HookRunner.run(path: dir + "/hook", name: "test", workingDirectory: dir, environment: ["CODE": "42"])
            }
            // A hook ended by a signal is a refusal that names the signal, not an exit status
            // (the signal's number was reported as one).
            try writeFile("#!/bin/sh\nkill -KILL $$\n", to: dir + "/killed", executable: true)
            expectThrows(RepoError.hookKilled(hook: "killed", signal: 9)) {
                try HookRunner.run(path: dir + "/killed", name: "killed", workingDirectory: dir, environment: [:])
            }
            #expect(RepoError.hookKilled(hook: "pre-commit", signal: 9).description
                == "pre-commit hook was ended by signal 9 (SIGKILL); nothing was written")
            // A missing hook is not an error.
            try HookRunner.run(path: dir + "/none", name: "none", workingDirectory: dir, environment: [:])
            // The hook runs in the working directory given.
            try writeFile("#!/bin/sh\npwd > out.txt\n", to: dir + "/pwd-hook", executable: true)
            try HookRunner.run(path: dir + "/pwd-hook", name: "pwd", workingDirectory: dir, environment: [:])
            #expect(String(decoding: try readFile(dir + "/out.txt"), as: UTF8.self) == dir + "\n")
        }
    }

    @Test func sampleHooksAreInstalledActiveOnRequest() throws {
        try withTemporaryDirectory { dir in
            let repo = try Repository.initialize(at: dir + "/r", installSampleHooks: true)
            for sample in HookSamples.all {
                let path = repo.metaDirectory + "/hooks/" + sample.name
                #expect(FileManager.default.isExecutableFile(atPath: path))
                #expect(try readFile(path) == Array(sample.script.utf8))
            }
        }
    }
}
