"""Schemathesis hooks for e2e/fuzz/run: a check that a rejected request wrote nothing.

Around every call the hooks read a cheap change marker of the server's database (SQLite's
`PRAGMA data_version` on a connection of our own, PostgreSQL's WAL insert position). Only when
the marker moved is a fingerprint taken: a hash per table of every row, leaving out what the
server rightly writes outside the request's own effect (a user's last activity, the first
sighting of a token from an address, audit entries of refused attempts, and the job, delivery
and export tables that the in-process workers update in the background). A 4xx answer whose call changed a fingerprint fails the
check `nothing_written_by_rejected_request`, naming the tables.

The fuzzer runs with one worker (-w 1), so calls never overlap (its phases may still call from
different threads, hence the lock around the connection), and a change seen between
`before_call` and `after_call` belongs to that call (or to background work, excluded above).

Environment: VERITY_FUZZ_SQLITE=<path of verity.db> or VERITY_FUZZ_PG=<connection string>.
"""

import hashlib
import os
import threading

import schemathesis

# Tables, or single columns ("table.column"), that change without the request being at fault.
EXCLUDED = {
    "_sqlx_migrations",
    "app_user.last_activity",
    "token_source",
    "jobs",
    "webhook_event",
    "webhook_delivery",
    # Export conversions finish in the background and record what they produced.
    "export_snapshot.status",
    "export_snapshot.task_count",
    "export_snapshot.annotation_count",
    "export_snapshot.md5",
    "export_snapshot.error",
    "export_snapshot.converted",
    "export_snapshot.finished_at",
    # The audit chain's head moves with every entry; the entries themselves are checked below.
    "audit_head",
}

# Rows that a rejected request rightly adds: the audit log records refused and failed attempts.
ROW_FILTER = {"audit_log": "where outcome = 'ok'"}


class Database:
    def __init__(self):
        self.sqlite = os.environ.get("VERITY_FUZZ_SQLITE")
        self.pg = os.environ.get("VERITY_FUZZ_PG")
        self.conn = None
        self.columns = {}

    def connect(self):
        if self.conn is not None:
            return
        if self.sqlite:
            import sqlite3

            self.conn = sqlite3.connect(
                f"file:{self.sqlite}?mode=ro", uri=True, timeout=30, check_same_thread=False
            )
            rows = self.conn.execute(
                "select name from sqlite_master where type = 'table' and name not like 'sqlite_%'"
            ).fetchall()
            tables = [r[0] for r in rows]
            for table in tables:
                cols = [r[1] for r in self.conn.execute(f'pragma table_info("{table}")')]
                self.columns[table] = cols
        elif self.pg:
            import psycopg

            self.conn = psycopg.connect(self.pg, autocommit=True)
            rows = self.conn.execute(
                "select table_name, column_name from information_schema.columns "
                "where table_schema = 'public' order by table_name, ordinal_position"
            ).fetchall()
            for table, column in rows:
                self.columns.setdefault(table, []).append(column)
        for table in list(self.columns):
            if table in EXCLUDED:
                del self.columns[table]
            else:
                self.columns[table] = [
                    c for c in self.columns[table] if f"{table}.{c}" not in EXCLUDED
                ]

    def marker(self):
        with LOCK:
            return self._marker()

    def _marker(self):
        self.connect()
        if self.sqlite:
            return self.conn.execute("pragma data_version").fetchone()[0]
        return self.conn.execute("select pg_current_wal_insert_lsn()::text").fetchone()[0]

    def fingerprint(self):
        with LOCK:
            return self._fingerprint()

    def _fingerprint(self):
        self.connect()
        result = {}
        for table, cols in self.columns.items():
            select = ", ".join(f'"{c}"' for c in cols)
            where = ROW_FILTER.get(table, "")
            if self.sqlite:
                rows = sorted(repr(r) for r in self.conn.execute(f'select {select} from "{table}" {where}'))
                result[table] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
            else:
                row = self.conn.execute(
                    f"select md5(coalesce(string_agg(x::text, '|' order by x::text), '')) "
                    f'from (select {select} from "{table}" {where}) x'
                ).fetchone()
                result[table] = row[0]
        return result


LOCK = threading.Lock()
DB = Database()
STATE = threading.local()
CACHE = {"marker": None, "fingerprint": None}


@schemathesis.hook
def before_call(context, case, kwargs):
    marker = DB.marker()
    if marker != CACHE["marker"] or CACHE["fingerprint"] is None:
        CACHE["fingerprint"] = DB.fingerprint()
        CACHE["marker"] = DB.marker()
    STATE.changed = None


@schemathesis.hook
def after_call(context, case, response):
    marker = DB.marker()
    if marker == CACHE["marker"]:
        STATE.changed = []
        return
    before = CACHE["fingerprint"]
    after = DB.fingerprint()
    STATE.changed = sorted(t for t in after if before.get(t) != after[t])
    CACHE["fingerprint"] = after
    CACHE["marker"] = DB.marker()


@schemathesis.check
def nothing_written_by_rejected_request(ctx, response, case):
    changed = getattr(STATE, "changed", None)
    if changed and 400 <= response.status_code < 500:
        raise AssertionError(
            f"answered {response.status_code} but changed the tables {', '.join(changed)}"
        )
    return None
