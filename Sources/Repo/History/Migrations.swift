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
        // Several working trees over one store (`mrepo worktree`): the per-working-tree tables get a
        // `worktree` key, '' for the main working tree, whose rows are kept as they were. SQLite
        // cannot drop the `CHECK (id = 1)` of a single-row table, so each is rebuilt: renamed,
        // created anew, filled from the old one, dropped. No other table refers to them.
        m.registerMigration("v5-worktrees") { db in
            try db.execute(sql: """
                CREATE TABLE worktree (
                    id TEXT PRIMARY KEY NOT NULL CHECK (id <> ''),
                    path TEXT NOT NULL UNIQUE,
                    created REAL NOT NULL
                );
                ALTER TABLE head RENAME TO headV1;
                CREATE TABLE head (
                    worktree TEXT PRIMARY KEY NOT NULL,
                    branch TEXT,
                    commitID TEXT REFERENCES "commit"(id),
                    CHECK ((branch IS NULL) <> (commitID IS NULL))
                );
                INSERT INTO head(worktree, branch, commitID) SELECT '', branch, commitID FROM headV1;
                DROP TABLE headV1;
                ALTER TABLE statCache RENAME TO statCacheV1;
                CREATE TABLE statCache (
                    worktree TEXT NOT NULL,
                    path TEXT NOT NULL,
                    size INTEGER NOT NULL,
                    mtimeNs INTEGER NOT NULL,
                    ctimeNs INTEGER NOT NULL,
                    inode INTEGER NOT NULL,
                    device INTEGER NOT NULL,
                    recordedNs INTEGER NOT NULL,
                    identity TEXT NOT NULL,
                    PRIMARY KEY (worktree, path)
                );
                INSERT INTO statCache(worktree, path, size, mtimeNs, ctimeNs, inode, device, recordedNs, identity)
                    SELECT '', path, size, mtimeNs, ctimeNs, inode, device, recordedNs, identity FROM statCacheV1;
                DROP TABLE statCacheV1;
                ALTER TABLE mergeState RENAME TO mergeStateV1;
                CREATE TABLE mergeState (
                    worktree TEXT PRIMARY KEY NOT NULL,
                    state TEXT NOT NULL
                );
                INSERT INTO mergeState(worktree, state) SELECT '', state FROM mergeStateV1;
                DROP TABLE mergeStateV1;
                ALTER TABLE worktreeView RENAME TO worktreeViewV1;
                CREATE TABLE worktreeView (
                    worktree TEXT PRIMARY KEY NOT NULL,
                    commitID TEXT NOT NULL,
                    description TEXT NOT NULL,
                    files TEXT NOT NULL
                );
                INSERT INTO worktreeView(worktree, commitID, description, files) SELECT '', commitID, description, files FROM worktreeViewV1;
                DROP TABLE worktreeViewV1;
                """)
        }
        // Remotes, their remote-tracking refs and the upstream of each branch (docs/remotes.md).
        m.registerMigration("v6-remotes") { db in
            try db.execute(sql: """
                CREATE TABLE remote (
                    name TEXT PRIMARY KEY NOT NULL,
                    url TEXT NOT NULL,
                    lazy INTEGER NOT NULL DEFAULT 0
                );
                CREATE TABLE remoteRef (
                    remote TEXT NOT NULL REFERENCES remote(name) ON DELETE CASCADE ON UPDATE CASCADE,
                    name TEXT NOT NULL,
                    kind TEXT NOT NULL CHECK (kind IN ('branch', 'tag')),
                    commitID TEXT NOT NULL REFERENCES "commit"(id),
                    timestamp REAL NOT NULL,
                    PRIMARY KEY (remote, name)
                );
                CREATE TABLE upstream (
                    branch TEXT PRIMARY KEY NOT NULL,
                    remote TEXT NOT NULL REFERENCES remote(name) ON DELETE CASCADE ON UPDATE CASCADE,
                    remoteBranch TEXT NOT NULL
                );
                """)
        }
        // Notes and metrics added to commits after the fact, and stashed working trees.
        m.registerMigration("v7-annotations") { db in
            // Additive: new tables only; a commit's id and rows never change.
            try db.execute(sql: HistoryDatabase.annotationsSchema)
        }
        // Shallow clones: the parents and base a boundary commit's id hashes (docs/format.md §6.7).
        m.registerMigration("v8-shallow") { db in
            // Additive: a new table; complete repositories have no rows in it.
            try db.execute(sql: HistoryDatabase.shallowSchema)
        }
        // The trials of `merge --search`, so an interrupted search resumes (docs/format.md §6.8).
        m.registerMigration("v9-trials") { db in
            // Additive: new tables only.
            try db.execute(sql: HistoryDatabase.trialsSchema)
        }
        // The bisection in progress of each working tree (`mrepo bisect`, docs/format.md §6.9).
        m.registerMigration("v10-bisect") { db in
            // Additive: a new table; no bisection, no row.
            try db.execute(sql: HistoryDatabase.bisectSchema)
        }
        // The CRC-32C of each object file, which merges check instead of hashing the decoded
        // bytes (docs/format.md §5.7, §6.10).
        m.registerMigration("v11-object-crc32c") { db in
            // Additive: rows recorded before have none (NULL) and are verified as before.
            try db.execute(sql: "ALTER TABLE object ADD COLUMN crc32c INTEGER")
        }
        return m
    }
}
