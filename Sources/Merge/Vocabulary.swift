/// Vocabulary matrices (embeddings, LM heads) whose row counts differ between the inputs of a merge.
///
/// mergekit slices every input to the smallest shape (or to the base's) without saying so; mrepo makes
/// a difference a conflict unless a policy is chosen (``VocabularyPolicy``), merges the rows every input
/// shares with the method, settles the others by the policy, and reports every row it adds or drops.
public enum Vocabulary {
    /// What rectifying one matrix gives: the experts cut to the shared rows, and the rows to append
    /// after merging them.
    public struct Rectified: Sendable {
        /// Each expert's first `commonRows` rows (what the method merges).
        public var experts: [[Float]]
        public var commonRows: Int
        /// Rows after the shared ones that the policy keeps: the mean of the inputs that have each row
        /// (the base's row when no expert has it).
        public var extra: (rows: Int, values: [Float])?
        /// What was added or dropped, for the report.
        public var remarks: [String]
    }

    /// Brings row-major matrices of `columns` columns with different row counts to common rows.
    ///
    /// - Parameters:
    ///   - baseRows: the merge base's row count (`base` holds them).
    ///   - expertRows: each expert's row count.
    ///   - expertNames: for the remarks.
    public static func rectify(base: [Float], baseRows: Int, columns: Int, experts: [[Float]], expertRows: [Int],
                               expertNames: [String], policy: VocabularyPolicy) -> Rectified {
        let rows = [baseRows] + expertRows
        let minRows = rows.min() ?? 0, maxRows = rows.max() ?? 0
        var remarks: [String] = []
        let target: Int
        switch policy {
        case .common: target = minRows
        case .base: target = baseRows
        case .union: target = maxRows
        }
        let trimmed = experts.map { Array($0.prefix(minRows * columns)) }
        var extra: [Float] = []
        if target > minRows {
            for r in minRows..<target {
                var sum = [Double](repeating: 0, count: columns)
                var count = 0
                for (i, e) in experts.enumerated() where rows[i + 1] > r {
                    for c in 0..<columns { sum[c] += Double(e[r * columns + c]) }
                    count += 1
                }
                if count == 0, baseRows > r {
                    for c in 0..<columns { sum[c] = Double(base[r * columns + c]) }
                    count = 1
                }
                extra += sum.map { Float($0 / Double(max(count, 1))) }
            }
            remarks.append("vocabulary \(policy.rawValue): rows \(minRows)..<\(target) not shared by every input were taken as the mean of the inputs that have them")
        }
        for i in expertRows.indices where rows[i + 1] > target {
            let name = i < expertNames.count ? expertNames[i] : "expert \(i + 1)"
            remarks.append("vocabulary \(policy.rawValue): rows \(target)..<\(rows[i + 1]) of \(name) were dropped")
        }
        if baseRows > target { remarks.append("vocabulary \(policy.rawValue): rows \(target)..<\(baseRows) of the merge base were dropped") }
        return Rectified(experts: trimmed, commonRows: minRows, extra: target > minRows ? (target - minRows, extra) : nil, remarks: remarks)
    }
}
