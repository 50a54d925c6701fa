"""The migration journal's schema: forward-only migrations, one tuple of statements per version.

Kept apart from ``journal.py`` so the history of the file format reads in one place.
"""

from __future__ import annotations

# Forward-only schema migrations: MIGRATIONS[i] takes user_version i to i + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: the base tables
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY, plan TEXT NOT NULL, wave INTEGER NOT NULL, command TEXT NOT NULL,
            status TEXT NOT NULL, actor TEXT NOT NULL, pid INTEGER NOT NULL, host TEXT NOT NULL,
            started_at TEXT NOT NULL, finished_at TEXT)""",
        """CREATE TABLE systems (
            plan TEXT NOT NULL, system TEXT NOT NULL, wave INTEGER NOT NULL, state TEXT NOT NULL,
            last_good TEXT NOT NULL, run_id TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (plan, system))""",
        """CREATE TABLE transitions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, intent_id INTEGER REFERENCES transitions(id),
            run_id TEXT NOT NULL, plan TEXT NOT NULL, system TEXT NOT NULL, action TEXT NOT NULL,
            phase TEXT NOT NULL CHECK (phase IN ('intent', 'outcome')), from_state TEXT NOT NULL,
            to_state TEXT, result TEXT NOT NULL, detail TEXT NOT NULL, at TEXT NOT NULL)""",
        """CREATE TABLE facts (
            id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, plan TEXT NOT NULL, system TEXT NOT NULL,
            step TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, at TEXT NOT NULL)""",
        """CREATE TABLE locks (
            plan TEXT NOT NULL, wave INTEGER NOT NULL, run_id TEXT NOT NULL, pid INTEGER NOT NULL,
            host TEXT NOT NULL, user TEXT NOT NULL, started_at TEXT NOT NULL, PRIMARY KEY (plan, wave))""",
        """CREATE TABLE audit (
            seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
            target TEXT NOT NULL, result TEXT NOT NULL, detail TEXT NOT NULL,
            prev_hash TEXT NOT NULL, hash TEXT NOT NULL)""",
        """CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL)""",
    ),
    (  # 2: pid reuse safety for locks (process start time) and lookup indexes
        "ALTER TABLE locks ADD COLUMN pid_starttime INTEGER",
        "CREATE INDEX facts_by_system ON facts (plan, system, key)",
        "CREATE INDEX transitions_by_system ON transitions (plan, system)",
        "CREATE INDEX audit_by_target ON audit (target)",
    ),
    (),  # 3: no table changes; from here on the journal keeps its audit head in a head file beside it
)
SCHEMA_VERSION = len(MIGRATIONS)
ANCHORED_SINCE = 3  # a journal at this version or later without its head file has lost it
