import Testing

@testable import Merge

/// Vocabulary matrices with different row counts, brought to common rows by a policy.
@Suite struct VocabularyTests {
    // Base 2 rows, expert a 3 rows, expert b 4 rows; 2 columns.
    let base: [Float] = [1, 1, 2, 2]
    let a: [Float] = [1, 1, 2, 2, 3, 3]
    let b: [Float] = [1, 1, 2, 2, 5, 5, 7, 7]

    func run(_ policy: VocabularyPolicy) -> Vocabulary.Rectified {
        Vocabulary.rectify(base: base, baseRows: 2, columns: 2, experts: [a, b], expertRows: [3, 4], expertNames: ["a", "b"], policy: policy)
    }

    @Test func unionAveragesTheRowsOnlySomeInputsHave() {
        let r = run(.union)
        #expect(r.commonRows == 2 && r.experts == [[1, 1, 2, 2], [1, 1, 2, 2]])
        // Row 2: mean of a and b (3, 5) = 4; row 3: only b has it = 7.
        #expect(r.extra?.rows == 2 && r.extra?.values == [4, 4, 7, 7])
        #expect(r.remarks == ["vocabulary union: rows 2..<4 not shared by every input were taken as the mean of the inputs that have them"])
    }

    @Test func baseAndCommonDropTheOthersAndSaySo() {
        let r = run(.base)
        #expect(r.extra == nil && r.commonRows == 2)
        #expect(r.remarks == ["vocabulary base: rows 2..<3 of a were dropped", "vocabulary base: rows 2..<4 of b were dropped"])
        #expect(run(.common).remarks == ["vocabulary common: rows 2..<3 of a were dropped", "vocabulary common: rows 2..<4 of b were dropped"])
    }
}
