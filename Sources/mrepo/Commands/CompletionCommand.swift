import ArgumentParser
import Foundation
import Repo

/// The shells `completion` writes scripts for.
enum Shell: String, ExpressibleByArgument, CaseIterable {
    case bash, zsh, fish
}

struct CompletionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "completion",
        abstract: "Print a shell completion script (branch, tag and expert names are completed from the repository).",
        discussion: """
            bash: 'source <(mrepo completion bash)', or save it in /etc/bash_completion.d/mrepo. zsh: save it \
            as _mrepo in a folder of $fpath. fish: save it as ~/.config/fish/completions/mrepo.fish.
            """)

    @Argument(help: ArgumentHelp("bash, zsh or fish.", valueName: "shell"))
    var shell: Shell

    func run() throws {
        guard let kind = CompletionShell(rawValue: shell.rawValue) else { throw ValidationError("unknown shell '\(shell.rawValue)'") }
        print(MrepoCommand.completionScript(for: kind))
    }
}

/// Names completed from the repository of the current folder (nothing outside one).
enum CompletionNames {
    /// Branches, tags, HEAD and ORIG_HEAD.
    static let revisions = CompletionKind.custom { _, _, _ in
        guard let repo = try? Repository.open() else { return [] }
        return (try? repo.revisionNames()) ?? ["HEAD"]
    }

    /// Branches only.
    static let branches = CompletionKind.custom { _, _, _ in
        guard let repo = try? Repository.open() else { return [] }
        return (try? repo.refs(kind: .branch).map(\.name)) ?? []
    }

    /// Tags only.
    static let tags = CompletionKind.custom { _, _, _ in
        guard let repo = try? Repository.open() else { return [] }
        return (try? repo.tags().map(\.name)) ?? []
    }

    /// The expert names of the reversible merges in the history.
    static let experts = CompletionKind.custom { _, _, _ in
        guard let repo = try? Repository.open() else { return [] }
        return (try? repo.reversibleExpertNames()) ?? []
    }
}
