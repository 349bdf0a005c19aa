import ArgumentParser
import Foundation

/// `mrepo help --man`: a man page (roff) generated from the same help the commands print.
enum ManPage {
    static func render() -> String {
        let root = MrepoCommand.configuration
        var out = [".TH MREPO 1 \"\" \"mrepo \(root.version)\" \"mrepo manual\"", ".SH NAME", "mrepo \\- \(escape(root.abstract))",
                   ".SH SYNOPSIS", ".B mrepo", "[\\-C \\fIdir\\fR] \\fIcommand\\fR [\\fIoptions\\fR]", ".SH DESCRIPTION", escape(root.discussion),
                   ".SH COMMANDS"]
        for group in root.groupedSubcommands {
            out.append(".SS \(escape(group.name))")
            for command in group.subcommands {
                let c = command.configuration
                out += [".TP", ".B \(c.commandName ?? "")", escape(c.abstract)]
            }
        }
        for command in root.groupedSubcommands.flatMap(\.subcommands) {
            out += [".SH \"MREPO \((command.configuration.commandName ?? "").uppercased())\"", ".nf"]
            out += MrepoCommand.helpMessage(for: command, columns: 100).split(separator: "\n", omittingEmptySubsequences: false).map { escape(String($0)) }
            out.append(".fi")
        }
        out += [".SH \"SEE ALSO\"", "docs/guide.md, docs/merging.md, docs/format.md in the mrepo sources."]
        return out.joined(separator: "\n")
    }

    /// Text safe in roff: backslashes doubled, a leading dot or quote protected.
    static func escape(_ text: String) -> String {
        text.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            let s = line.replacingOccurrences(of: "\\", with: "\\\\")
            return s.hasPrefix(".") || s.hasPrefix("'") ? "\\&" + s : s
        }.joined(separator: "\n")
    }
}
