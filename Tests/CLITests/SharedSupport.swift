// Every file of this target sees the shared test helpers (Tests/MrepoTestSupport) without
// importing them; see Tests/README.md.
@_exported import MrepoTestSupport
