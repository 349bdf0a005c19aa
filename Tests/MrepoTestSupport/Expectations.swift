import Testing

// Swift 6.3.1 can run the wrong closure when a closure literal inside `#expect`/`#require` sits
// inside another closure literal (for example the body passed to `withTemporaryDirectory`): it may
// share a symbol with a neighbouring closure of the same type. Inside such bodies, keep closures
// out of the macros: hoist the closure-bearing expression into a local first, and write
// `#expect(throws: X) { ... }` as `expectThrows(X) { ... }`. Suites whose setup is a fixture
// (`init`/`deinit` on a `final class` suite) have no enclosing closure and need neither
// (Tests/README.md).

/// `#expect(throws: expected) { try body() }`, with no closure inside the macro: records an issue
/// unless `body` throws an error equal to `expected`.
public func expectThrows<E: Error & Equatable, R>(_ expected: E, sourceLocation: SourceLocation = #_sourceLocation,
                                                   _ body: () throws -> R) {
    do {
        _ = try body()
        Issue.record("Expected \(expected) to be thrown, but nothing was thrown", sourceLocation: sourceLocation)
    } catch {
        #expect(error as? E == expected, "Expected \(expected), got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
}

/// `#expect(throws: E.self) { try body() }`, with no closure inside the macro: records an issue
/// unless `body` throws an error of type `E`. Prefer the form above, which names the case.
public func expectThrows<E: Error, R>(_ errorType: E.Type, sourceLocation: SourceLocation = #_sourceLocation,
                                      _ body: () throws -> R) {
    do {
        _ = try body()
        Issue.record("Expected an error of type \(E.self) to be thrown, but nothing was thrown", sourceLocation: sourceLocation)
    } catch {
        #expect(error is E, "Expected an error of type \(E.self), got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
}

/// Records an issue unless `body` throws an `E` that `matches` accepts: a case match, for errors
/// whose other associated values are beside the point or vary from run to run (digests, temporary
/// paths), e.g. `expectThrows(RepoError.self, { try repo.checkout("main") }) { if case .unsafePath = $0 { true } else { false } }`.
public func expectThrows<E: Error, R>(_ errorType: E.Type, sourceLocation: SourceLocation = #_sourceLocation,
                                      _ body: () throws -> R, matching matches: (E) -> Bool) {
    do {
        _ = try body()
        Issue.record("Expected an error of type \(E.self) to be thrown, but nothing was thrown", sourceLocation: sourceLocation)
    } catch let error as E {
        #expect(matches(error), "Unexpected \(E.self) case: \(error)", sourceLocation: sourceLocation)
    } catch {
        Issue.record("Expected an error of type \(E.self), got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
}

/// The error `body` throws, or nil: for tests that look inside an error's associated values.
public func thrownError(_ body: () throws -> Void) -> (any Error)? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}
