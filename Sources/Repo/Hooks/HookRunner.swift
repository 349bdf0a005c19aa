import CKernels
import CLinux
import Foundation

/// Runs repository hooks: executable files in `.mrepo/hooks`, named after the event.
///
/// A hook runs in the working tree with the event's details in `MREPO_*` environment variables
/// (docs/guide.md, "Hooks"). Its standard output and error go to mrepo's standard error, so
/// `--json` output stays clean.
public enum HookRunner {
    /// Runs the hook at `path` if it exists and is executable.
    /// - Throws: ``RepoError/hookRejected(hook:status:)`` when it exits non-zero,
    ///   ``RepoError/hookKilled(hook:signal:)`` when a signal ends it.
    public static func run(path: String, name: String, workingDirectory: String, environment: [String: String]) throws {
        guard FileManager.default.isExecutableFile(atPath: path) else {
            hintIfNotExecutable(path, name: name)
            return
        }
        var env = ProcessInfo.processInfo.environment
        env["MREPO_HOOK"] = name
        env["MREPO_ROOT"] = workingDirectory
        env["MREPO_EXE"] = executablePath
        for (k, v) in environment { env[k] = v }
        // Registered with the evaluations (``LiveEvaluations``): a signal that ends mrepo (a
        // `timeout`'s SIGTERM) sends the hook SIGTERM too; it was left running. It stays in
        // mrepo's process group, the terminal's, so that it may prompt there (a passphrase) and
        // gets Ctrl-C as git's hooks do.
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        // Its output goes to mrepo's standard error, so `--json` output stays clean.
        posix_spawn_file_actions_adddup2(&actions, 2, 1)
        posix_spawn_file_actions_addclosefrom_np(&actions, 3)
        posix_spawn_file_actions_addchdir_np(&actions, workingDirectory)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // As Foundation's Process started hooks: every signal at its default and none blocked,
        // whatever mrepo inherited (a server ignores SIGTERM to handle it itself).
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = [strdup(path), nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        let (rc, pid) = LiveEvaluations.spawn(path, &actions, &attributes, argv, envp, group: false)
        guard rc == 0 else {
            throw RepoError.io(path: path, reason: "cannot run the \(name) hook: " + whyNotRun(path, code: rc))
        }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else {
                // Never taken for a pass: a gate whose verdict is unknown did not say yes (with
                // SIGCHLD ignored, the kernel reaps the hook and its status is lost).
                let reason = String(cString: strerror(errno))
                LiveEvaluations.remove(pid)
                throw RepoError.io(path: path, reason: "cannot learn how the \(name) hook ended (\(reason)); nothing was written")
            }
        }
        LiveEvaluations.remove(pid)
        // WIFSIGNALED / WEXITSTATUS, which Swift does not import.
        let signal = status & 0x7F
        if signal != 0 && signal != 0x7F {
            throw RepoError.hookKilled(hook: name, signal: signal)
        }
        let exit = (status >> 8) & 0xFF
        if exit != 0 {
            throw RepoError.hookRejected(hook: name, status: exit)
        }
    }

    /// As git's hint: a hook written without its execute bit is easy to miss.
    static func hintIfNotExecutable(_ path: String, name: String) {
        if let st = FileStat.of(path, followLinks: true), st.isRegular {
            FileHandle.standardError.write(Data("mrepo: hint: the \(name) hook was ignored because it is not executable (chmod +x \(path))\n".utf8))
        }
    }

    /// Why an executable hook did not start: its `#!` interpreter, when that is missing (the
    /// system's error names only "the file", which exists).
    static func whyNotRun(_ path: String, code: Int32) -> String {
        if let handle = FileHandle(forReadingAtPath: path), let head = try? handle.read(upToCount: 256) {
            try? handle.close()
            let line = String(decoding: head.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
            if line.hasPrefix("#!") {
                let interpreter = line.dropFirst(2).trimmingCharacters(in: .whitespaces).split(separator: " ").first.map(String.init) ?? ""
                if interpreter.hasSuffix("\r") {
                    return "its #! line ends in a carriage return: the file has Windows line endings (convert it, e.g. with dos2unix)"
                }
                if !interpreter.isEmpty, !FileManager.default.isExecutableFile(atPath: interpreter) {
                    return "its interpreter '\(interpreter)' (its #! line) does not exist or cannot be run"
                }
            } else if !head.isEmpty {
                return "it is not a program this system runs (start a script with a #! line, such as #!/bin/sh)"
            }
        }
        return String(cString: strerror(code))
    }

    /// The path of the running mrepo executable, for hooks that call mrepo back.
    public static var executablePath: String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        return CommandLine.arguments.first ?? "mrepo"
    }
}

/// The sample hooks that `mrepo init --hooks` installs (the same files ship in `hooks/`).
public enum HookSamples {
    public struct Sample: Sendable {
        public var name: String
        public var script: String
    }

    public static let all: [Sample] = [preCommit, postCommit, preMergeCommit, postMerge]

    /// Refuses a commit whose tensors hold NaN or Inf.
    public static let preCommit = Sample(name: "pre-commit", script: """
        #!/bin/sh
        # mrepo pre-commit hook: refuse checkpoints whose tensors hold NaN or Inf.
        #
        # Runs before anything is written. Environment: MREPO_SOURCE (the folder being committed),
        # MREPO_MESSAGE, MREPO_BRANCH, MREPO_PARENT, MREPO_AUTHOR, MREPO_METRICS (JSON), MREPO_EXE.
        # A non-zero exit aborts the commit and leaves the repository untouched.
        exec "${MREPO_EXE:-mrepo}" check --finite "$MREPO_SOURCE"

        """)

    /// Appends each commit and its metrics to `.mrepo/commits.log`.
    public static let postCommit = Sample(name: "post-commit", script: """
        #!/bin/sh
        # mrepo post-commit hook: append each commit and its recorded metrics to .mrepo/commits.log.
        #
        # Environment: MREPO_COMMIT (the new commit id), MREPO_BRANCH, MREPO_MESSAGE, MREPO_METRICS (JSON).
        # Its exit status is reported but cannot undo the commit.
        printf '%s\\t%s\\t%s\\t%s\\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$MREPO_COMMIT" "${MREPO_BRANCH:-detached}" "$MREPO_METRICS" \\
            >> "${MREPO_DIR:-$MREPO_ROOT/.mrepo}/commits.log"

        """)

    /// An evaluation gate: scores the merge candidate and compares it with the parents' metrics.
    public static let preMergeCommit = Sample(name: "pre-merge-commit", script: #"""
        #!/usr/bin/env python3
        """mrepo pre-merge-commit hook: an evaluation gate for merges.

        Runs before a merge commit is recorded, with the candidate model written out as files.
        Environment from mrepo: MREPO_CANDIDATE (folder holding the merged model), MREPO_REPORT
        (the conflict report, JSON), MREPO_EXPERT_METRICS (JSON: each expert's commit -> {metric: value};
        the experts are the models whose task vectors were merged, never the merge base),
        MREPO_PARENT_METRICS (the same for the merge commit's parents), MREPO_MERGE_BRANCHES,
        MREPO_MERGE_BASE. A non-zero exit rejects the merge; nothing is written.

        Configure it with:
          MREPO_EVAL_CMD      command that evaluates a model folder (given as its last argument), under
                              the evaluation contract of 'merge --search' (docs/merging.md): its last line
                              of output is a JSON object of task scores, or one number; unset: the gate
                              only reports and lets the merge pass
          MREPO_EVAL_TIMEOUT  seconds after which the evaluation (and all it started) is killed and the
                              merge rejected (default: no limit)
          MREPO_EVAL_TASK     with a JSON object: the task whose score is compared (default: the mean
                              of the tasks' scores)
          MREPO_EVAL_METRIC   the experts' metric to compare with (default eval_loss, as recorded by
                              'mrepo commit --metric eval_loss=...')
          MREPO_EVAL_HIGHER   set to 1 when higher scores are better (accuracy); default: lower is better
          MREPO_EVAL_POLICY   worst (default): the merge must score at least as well as the worst expert;
                              best: as well as the best expert; mean: as well as the experts' mean
          MREPO_EVAL_TOLERANCE relative slack (default 0)
        """
        import json, math, os, signal, subprocess, sys, tempfile, time

        candidate = os.environ["MREPO_CANDIDATE"]
        metric = os.environ.get("MREPO_EVAL_METRIC", "eval_loss")
        higher = os.environ.get("MREPO_EVAL_HIGHER") == "1"
        policy = os.environ.get("MREPO_EVAL_POLICY", "worst")
        tolerance = float(os.environ.get("MREPO_EVAL_TOLERANCE", "0"))
        if policy not in ("worst", "best", "mean"):
            print(f"pre-merge-commit: MREPO_EVAL_POLICY must be worst, best or mean, not {policy!r}")
            sys.exit(1)
        experts = json.loads(os.environ.get("MREPO_EXPERT_METRICS") or os.environ.get("MREPO_PARENT_METRICS", "{}"))
        values = [m[metric] for m in experts.values() if metric in m]

        command = os.environ.get("MREPO_EVAL_CMD")
        if not command:
            print(f"pre-merge-commit: MREPO_EVAL_CMD is not set; not gating ({len(values)} of {len(experts)} experts record {metric})")
            sys.exit(0)
        timeout = float(os.environ.get("MREPO_EVAL_TIMEOUT") or 0) or None
        def end_group(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

        # As 'merge --search' runs it: sh -c 'CMD "$@"' sh FOLDER, in a process group of its own,
        # which ends with it (what it left running is killed too). Its output goes to files: a
        # process it leaves running would hold a pipe open, and the gate would wait for it.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(["/bin/sh", "-c", command + ' "$@"', "sh", candidate], stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True)
            # Its group is ended before the command is reaped, while its id cannot name another group.
            deadline = None if timeout is None else time.monotonic() + timeout
            while os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                if deadline is not None and time.monotonic() > deadline:
                    end_group(proc.pid)
                    proc.wait()
                    print(f"pre-merge-commit: the evaluation ran longer than MREPO_EVAL_TIMEOUT={timeout:g} s and was killed")
                    sys.exit(1)
                time.sleep(0.02)
            end_group(proc.pid)
            proc.wait()
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read(), err.read()
        if proc.returncode != 0:
            print(f"pre-merge-commit: evaluation failed ({proc.returncode}): {stderr.strip()[:200]}")
            sys.exit(1)
        lines = [l for l in stdout.splitlines() if l.strip()]
        last = lines[-1].strip() if lines else ""

        def number(v):
            # A finite JSON number (not a boolean, a string or NaN), as the evaluation contract says.
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(v)
            return float(v)

        try:
            parsed = json.loads(last, parse_constant=lambda c: float(c))
        except ValueError:
            # A line such as "eval_loss 1.71": its last word.
            parsed = last.split()[-1] if last else ""
        try:
            if isinstance(parsed, dict):
                task = os.environ.get("MREPO_EVAL_TASK")
                scores = [number(v) for v in parsed.values()]
                score = number(parsed[task]) if task else sum(scores) / len(scores)
            elif isinstance(parsed, str):
                score = number(float(parsed))
            else:
                score = number(parsed)
        except (ValueError, KeyError, TypeError, ZeroDivisionError, OverflowError):
            print(f"pre-merge-commit: the evaluation's last line is neither a JSON object of finite scores nor a finite number: {last[:200]!r}")
            sys.exit(1)
        if not values:
            print(f"pre-merge-commit: {metric} = {score:g}; no expert records {metric}, nothing to compare with")
            sys.exit(0)
        if policy == "best":
            reference = max(values) if higher else min(values)
        elif policy == "mean":
            reference = sum(values) / len(values)
        else:
            reference = min(values) if higher else max(values)
        slack = abs(reference) * tolerance
        ok = score >= reference - slack if higher else score <= reference + slack
        verdict = "passes" if ok else "fails"
        print(f"pre-merge-commit: {metric} = {score:g}, {policy} of {len(values)} experts = {reference:g}: the merge {verdict} the gate")
        sys.exit(0 if ok else 1)

        """#)

    /// Logs each merge with its method and classes.
    public static let postMerge = Sample(name: "post-merge", script: """
        #!/bin/sh
        # mrepo post-merge hook: append each merge commit to .mrepo/merges.log.
        #
        # Environment: MREPO_COMMIT (the merge commit), MREPO_MERGE_BRANCHES, MREPO_MERGE_BASE.
        # Its exit status is reported but cannot undo the merge.
        printf '%s\t%s\tmerged %s\tbase %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$MREPO_COMMIT" "$MREPO_MERGE_BRANCHES" "$MREPO_MERGE_BASE" \
            >> "${MREPO_DIR:-$MREPO_ROOT/.mrepo}/merges.log"

        """)
}
