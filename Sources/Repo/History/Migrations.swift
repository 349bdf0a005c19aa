import GRDB

/// The history database's schema, as named forward migrations: every one of them, in order. A
/// migration is never edited once released; a change is a new one (docs/format.md §6 describes the
/// tables; an mrepo that finds a migration it does not know refuses the repository).
extension HistoryDatabase {
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        // The first schema: objects, trees, commits, refs, HEAD, the reflog and the stat cache.
        m.registerMigration("v1-history") { db in
            try db.execute(sql: """
                CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                CREATE TABLE object (
                    id TEXT PRIMARY KEY NOT NULL,
                    kind INTEGER NOT NULL,
                    encoding INTEGER NOT NULL,
                    referenceID TEXT REFERENCES object(id),
                    logicalBytes INTEGER NOT NULL,
                    storedBytes INTEGER NOT NULL,
                    depth INTEGER NOT NULL
                );
                CREATE INDEX objectReference ON object(referenceID);
                CREATE TABLE tree (
                    id TEXT PRIMARY KEY NOT NULL,
                    fileCount INTEGER NOT NULL,
                    tensorCount INTEGER NOT NULL,
                    logicalBytes INTEGER NOT NULL
                );
                CREATE TABLE treeFile (
                    treeID TEXT NOT NULL REFERENCES tree(id) ON DELETE CASCADE,
                    path TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    objectID TEXT NOT NULL REFERENCES object(id),
                    byteCount INTEGER NOT NULL,
                    executable INTEGER NOT NULL,
                    PRIMARY KEY (treeID, path)
                );
                CREATE TABLE treeTensor (
                    treeID TEXT NOT NULL,
                    path TEXT NOT NULL,
                    position INTEGER NOT NULL,
                    name TEXT NOT NULL,
                    dtype TEXT NOT NULL,
                    shape TEXT NOT NULL,
                    beginOffset INTEGER NOT NULL,
                    endOffset INTEGER NOT NULL,
                    objectID TEXT NOT NULL REFERENCES object(id),
                    PRIMARY KEY (treeID, path, position),
                    FOREIGN KEY (treeID, path) REFERENCES treeFile(treeID, path) ON DELETE CASCADE
                );
                CREATE INDEX treeTensorObject ON treeTensor(objectID);
                CREATE TABLE "commit" (
                    id TEXT PRIMARY KEY NOT NULL,
                    treeID TEXT NOT NULL REFERENCES tree(id),
                    baseID TEXT REFERENCES "commit"(id),
                    author TEXT NOT NULL,
                    timestamp REAL NOT NULL,
                    message TEXT NOT NULL,
                    metrics TEXT NOT NULL,
                    extra TEXT NOT NULL,
                    generation INTEGER NOT NULL
                );
                CREATE TABLE commitParent (
                    commitID TEXT NOT NULL REFERENCES "commit"(id) ON DELETE CASCADE,
                    position INTEGER NOT NULL,
                    parentID TEXT NOT NULL REFERENCES "commit"(id),
                    PRIMARY KEY (commitID, position)
                );
                CREATE INDEX commitParentParent ON commitParent(parentID);
                CREATE TABLE ref (
                    name TEXT PRIMARY KEY NOT NULL,
                    kind TEXT NOT NULL CHECK (kind IN ('branch', 'tag')),
                    commitID TEXT NOT NULL REFERENCES "commit"(id),
                    message TEXT,
                    timestamp REAL NOT NULL
                );
                CREATE TABLE head (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    branch TEXT,
                    commitID TEXT REFERENCES "commit"(id),
                    CHECK ((branch IS NULL) <> (commitID IS NULL))
                );
                CREATE TABLE reflog (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    ref TEXT NOT NULL,
                    oldID TEXT,
                    newID TEXT,
                    timestamp REAL NOT NULL,
                    message TEXT NOT NULL
                );
                CREATE TABLE statCache (
                    path TEXT PRIMARY KEY NOT NULL,
                    size INTEGER NOT NULL,
                    mtimeNs INTEGER NOT NULL,
                    ctimeNs INTEGER NOT NULL,
                    inode INTEGER NOT NULL,
                    device INTEGER NOT NULL,
                    recordedNs INTEGER NOT NULL,
                    identity TEXT NOT NULL
                );
                """)
        }
        // A merge that stopped before its commit (conflicts, or --no-commit).
        m.registerMigration("v2-merge-state") { db in
            try db.execute(sql: """
                CREATE TABLE mergeState (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    state TEXT NOT NULL
                );
                """)
        }
        // A view written over HEAD: an expert rebuilt from a reversible merge, a folded adapter.
        m.registerMigration("v3-worktree-view") { db in
            try db.execute(sql: """
                CREATE TABLE worktreeView (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    commitID TEXT NOT NULL,
                    description TEXT NOT NULL,
                    files TEXT NOT NULL
                );
                """)
        }
        // Each file's SHA-256 (mrepo 0.2.0).
        m.registerMigration("v4-file-sha256") { db in
            // Additive: NULL in the rows of older trees, which are then not checked.
            try db.execute(sql: "ALTER TABLE treeFile ADD COLUMN sha256 TEXT")
        }
        // Notes and metrics added to commits after the fact, and stashed working trees (mrepo 0.3.0).
        m.registerMigration("v5-annotations") { db in
            // Additive: new tables only; a commit's id and rows never change.
            try db.execute(sql: HistoryDatabase.annotationsSchema)
        }
        return m
    }
}
