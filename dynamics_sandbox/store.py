"""SQLite storage of the sandbox: records, sign-in grants and the request log.

The file lives in the sandbox data folder, apart from the product's database. One
connection is shared by all server threads and guarded by a lock, and WAL mode lets the
`sandbox_records` command read while a server writes.
"""

import json
import secrets
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from . import schema, seed

DATABASE_NAME = "records.sqlite3"

_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS record (
    table_name TEXT NOT NULL,
    id TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (table_name, id)
);
CREATE TABLE IF NOT EXISTS user_role (
    systemuserid TEXT NOT NULL,
    roleid TEXT NOT NULL,
    PRIMARY KEY (systemuserid, roleid)
);
CREATE TABLE IF NOT EXISTS grant_token (
    value TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    systemuserid TEXT NOT NULL,
    client_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS request_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    query TEXT NOT NULL,
    status INTEGER NOT NULL,
    systemuserid TEXT,
    duration_ms REAL NOT NULL,
    time TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'http',
    parent_id INTEGER
);
CREATE TABLE IF NOT EXISTS counter (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

# Kinds of request_log rows: an HTTP request that the server received, and a Web API
# operation that it ran. A plain Web API request logs one of each, and a $batch
# request logs one HTTP request plus one operation per part, each with the batch's id
# as parent_id.
HTTP_REQUEST = "http"
OPERATION = "operation"

# Kinds of grant_token rows.
AUTHORIZATION_CODE = "code"
ACCESS_TOKEN = "access"
REFRESH_TOKEN = "refresh"


def utc_now_text():
    """Return the current time as Dataverse writes it: ISO 8601, seconds, `Z`."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Records and grants of one sandbox data folder, which contains one environment.

    `environment` is the unique name of the environment whose users the store seeds.
    """

    def __init__(self, data_dir, cache=False, environment=seed.CONTOSO_SALES):
        self.data_dir = Path(data_dir)
        self.environment = environment
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.data_dir / DATABASE_NAME
        self._lock = threading.RLock()
        self._caching = cache
        self._cache = {}
        self._transaction_depth = threading.local()
        self._connection = sqlite3.connect(
            self.path, timeout=30, check_same_thread=False, isolation_level=None
        )
        self._connection.row_factory = sqlite3.Row
        with self._lock:
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.executescript(_SCHEMA_SQL)
            self._add_request_log_columns()
        self.seed()

    def _add_request_log_columns(self):
        """Add the columns that request_log tables of older data folders lack."""
        columns = {row["name"] for row in self._execute("PRAGMA table_info(request_log)")}
        if "kind" not in columns:
            self._execute("ALTER TABLE request_log ADD COLUMN kind TEXT NOT NULL DEFAULT 'http'")
        if "parent_id" not in columns:
            self._execute("ALTER TABLE request_log ADD COLUMN parent_id INTEGER")

    def close(self):
        with self._lock:
            self._connection.close()

    def _execute(self, sql, parameters=()):
        with self._lock:
            return self._connection.execute(sql, parameters).fetchall()

    def transaction(self):
        """Return a context manager that holds the lock and one SQLite transaction."""
        return _Transaction(self)

    # Seed data

    def seed(self):
        """Insert the fixed users, teams, roles and user roles unless they exist."""
        now = utc_now_text()
        with self.transaction():
            for role in seed.ROLES:
                if self.get("role", role["roleid"]) is None:
                    self._insert_seed("role", role["roleid"], {
                        "name": role["name"],
                        "_businessunitid_value": seed.BUSINESS_UNIT_ID,
                    }, now)
            for user in seed.users_of_environment(self.environment):
                if self.get("systemuser", user["systemuserid"]) is None:
                    names = [user["firstname"], user["lastname"]]
                    self._insert_seed("systemuser", user["systemuserid"], {
                        "firstname": user["firstname"],
                        "lastname": user["lastname"],
                        "fullname": " ".join(name for name in names if name),
                        "internalemailaddress": user["internalemailaddress"],
                        "domainname": user["internalemailaddress"],
                        "isdisabled": False,
                        "azureactivedirectoryobjectid": user["azureactivedirectoryobjectid"],
                        "applicationid": user.get("applicationid"),
                        "accessmode": user.get("accessmode", seed.ACCESS_MODE_READ_WRITE),
                        "_businessunitid_value": seed.BUSINESS_UNIT_ID,
                    }, now)
                for role_id in user["roles"]:
                    self._execute(
                        "INSERT OR IGNORE INTO user_role (systemuserid, roleid) VALUES (?, ?)",
                        (user["systemuserid"], role_id),
                    )

            for team in seed.TEAMS:
                if self.get("team", team["teamid"]) is None:
                    self._insert_seed("team", team["teamid"], {
                        "name": team["name"],
                        "teamtype": team["teamtype"],
                        "_businessunitid_value": seed.BUSINESS_UNIT_ID,
                    }, now)

    def _insert_seed(self, table_name, record_id, values, now):
        table = schema.TABLES[table_name]
        record = {column.value_name: None for column in table.columns.values()}
        record.update(values)
        record[table.primary_key] = record_id
        record.update({
            "createdon": now,
            "modifiedon": now,
            "_createdby_value": None,
            "_modifiedby_value": None,
            "versionnumber": self.next_version(),
        })
        self.insert(table_name, record)

    # Records

    def next_version(self):
        """Return the next org-wide row version, as Dataverse's versionnumber."""
        with self.transaction():
            self._execute(
                "INSERT INTO counter (name, value) VALUES ('version', 1000) "
                "ON CONFLICT (name) DO UPDATE SET value = value + 1"
            )
            return self._execute("SELECT value FROM counter WHERE name = 'version'")[0][0]

    def _table_cache(self, table_name):
        """Return {id: record} of a table, decoded once and kept in step with writes.

        Every query scans a whole table, and decoding each record's JSON for each scan
        made a bulk sync's reads cost O(records x queries). Only the server's own store
        caches (`cache=True`): a store opened by another process would go stale.
        """
        with self._lock:
            cached = self._cache.get(table_name)
            if cached is None:
                rows = self._connection.execute(
                    "SELECT id, data FROM record WHERE table_name = ? ORDER BY rowid",
                    (table_name,),
                ).fetchall()
                cached = {row["id"]: json.loads(row["data"]) for row in rows}
                self._cache[table_name] = cached
            return cached

    def get(self, table_name, record_id):
        """Return the stored record (Web API property names) or None."""
        if self._caching:
            record = self._table_cache(table_name).get(record_id.lower())
            return dict(record) if record is not None else None
        rows = self._execute(
            "SELECT data FROM record WHERE table_name = ? AND id = ?",
            (table_name, record_id.lower()),
        )
        return json.loads(rows[0]["data"]) if rows else None

    def records(self, table_name):
        """Return every record of a table (logical or entity set name), oldest first."""
        table = schema.table_for(table_name)
        if table is None:
            raise KeyError(f"Unknown table {table_name!r}. Use one of: {', '.join(schema.TABLES)}.")
        if self._caching:
            with self._lock:
                return [dict(record)
                        for record in self._table_cache(table.logical_name).values()]
        rows = self._execute(
            "SELECT data FROM record WHERE table_name = ? ORDER BY rowid", (table.logical_name,)
        )
        return [json.loads(row["data"]) for row in rows]

    def insert(self, table_name, record):
        """Insert a record. Raise sqlite3.IntegrityError if its id exists."""
        table = schema.TABLES[table_name]
        record_id = record[table.primary_key].lower()
        with self._lock:
            self._execute(
                "INSERT INTO record (table_name, id, data) VALUES (?, ?, ?)",
                (table_name, record_id, json.dumps(record)),
            )
            if table_name in self._cache:
                self._cache[table_name][record_id] = dict(record)

    def replace(self, table_name, record):
        table = schema.TABLES[table_name]
        record_id = record[table.primary_key].lower()
        with self._lock:
            self._execute(
                "UPDATE record SET data = ? WHERE table_name = ? AND id = ?",
                (json.dumps(record), table_name, record_id),
            )
            if table_name in self._cache and record_id in self._cache[table_name]:
                self._cache[table_name][record_id] = dict(record)

    def delete(self, table_name, record_id):
        with self._lock:
            self._execute(
                "DELETE FROM record WHERE table_name = ? AND id = ?",
                (table_name, record_id.lower()),
            )
            if table_name in self._cache:
                self._cache[table_name].pop(record_id.lower(), None)

    def role_ids_of_user(self, user_id):
        rows = self._execute(
            "SELECT roleid FROM user_role WHERE systemuserid = ? ORDER BY roleid", (user_id,)
        )
        return [row["roleid"] for row in rows]

    def user_by_email(self, email):
        """Return the systemuser whose sign-in name matches `email` (any case), or None."""
        if not email.strip():
            return None
        for user in self.records("systemuser"):
            if (user["domainname"] or "").lower() == email.strip().lower():
                return user
        return None

    def user_by_object_id(self, object_id):
        """Return the systemuser with this azureactivedirectoryobjectid, or None."""
        return self._user_by_guid("azureactivedirectoryobjectid", object_id)

    def user_by_application_id(self, application_id):
        """Return the application user of the app with this client id, or None."""
        return self._user_by_guid("applicationid", application_id)

    def _user_by_guid(self, name, value):
        if not value:
            return None
        for user in self.records("systemuser"):
            if (user.get(name) or "").lower() == value.lower():
                return user
        return None

    # Sign-in grants: authorization codes, access tokens and refresh tokens

    def add_grant(self, kind, user_id, client_id, lifetime_seconds, data):
        """Store a new random grant and return its value."""
        value = secrets.token_urlsafe(32)
        self._execute(
            "INSERT INTO grant_token (value, kind, systemuserid, client_id, expires_at, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (value, kind, user_id, client_id, time.time() + lifetime_seconds, json.dumps(data)),
        )
        return value

    def get_grant(self, kind, value):
        """Return the grant as a dict (with `expired` and `revoked`) or None."""
        rows = self._execute(
            "SELECT * FROM grant_token WHERE kind = ? AND value = ?", (kind, value)
        )
        if not rows:
            return None
        row = rows[0]
        grant = json.loads(row["data"])
        grant.update({
            "value": row["value"],
            "systemuserid": row["systemuserid"],
            "client_id": row["client_id"],
            "expires_at": row["expires_at"],
            "expired": row["expires_at"] <= time.time(),
            "revoked": bool(row["revoked"]),
        })
        return grant

    def revoke_grant(self, value):
        """Mark a grant as used or revoked. Return True if it was valid until now."""
        with self.transaction():
            rows = self._execute(
                "SELECT revoked FROM grant_token WHERE value = ?", (value,)
            )
            if not rows or rows[0]["revoked"]:
                return False
            self._execute("UPDATE grant_token SET revoked = 1 WHERE value = ?", (value,))
            return True

    def expire_access_tokens(self, user_id=None):
        """Make access tokens expire now, so tests can exercise a 401 and a refresh."""
        self._expire(ACCESS_TOKEN, user_id)

    def expire_refresh_tokens(self, user_id=None):
        """Make refresh tokens expire now, so tests can exercise invalid_grant."""
        self._expire(REFRESH_TOKEN, user_id)

    def revoke_refresh_tokens(self, user_id=None):
        """Revoke refresh tokens (of one user, or all), as when an admin revokes sessions.

        Redeeming one then fails with invalid_grant.
        """
        if user_id is None:
            self._execute("UPDATE grant_token SET revoked = 1 WHERE kind = ?", (REFRESH_TOKEN,))
        else:
            self._execute(
                "UPDATE grant_token SET revoked = 1 WHERE kind = ? AND systemuserid = ?",
                (REFRESH_TOKEN, user_id),
            )

    def _expire(self, kind, user_id):
        if user_id is None:
            self._execute("UPDATE grant_token SET expires_at = 0 WHERE kind = ?", (kind,))
        else:
            self._execute(
                "UPDATE grant_token SET expires_at = 0 WHERE kind = ? AND systemuserid = ?",
                (kind, user_id),
            )

    # Request log

    def log_request(self, method, path, query, status, user_id, duration_ms, operations=()):
        """Log an HTTP request and the Web API operations it ran (dicts as in
        Request.operations)."""
        now = utc_now_text()
        with self.transaction():
            cursor = self._connection.execute(
                "INSERT INTO request_log (method, path, query, status, systemuserid, "
                "duration_ms, time, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (method, path, query, status, user_id, duration_ms, now, HTTP_REQUEST),
            )
            parent_id = cursor.lastrowid
            for operation in operations:
                self._execute(
                    "INSERT INTO request_log (method, path, query, status, systemuserid, "
                    "duration_ms, time, kind, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (operation["method"], operation["path"], operation["query"],
                     operation["status"], user_id, operation["duration_ms"], now,
                     OPERATION, parent_id),
                )

    def requests(self, method=None, path_prefix=None, kind=HTTP_REQUEST):
        """Return logged requests (dicts, oldest first), optionally filtered.

        `kind` is HTTP_REQUEST (the default) for the HTTP requests that the server
        received, OPERATION for the Web API operations that they ran, or None for both.
        """
        sql = "SELECT * FROM request_log WHERE 1 = 1"
        parameters = []
        if method:
            sql += " AND method = ?"
            parameters.append(method.upper())
        if path_prefix:
            sql += " AND substr(path, 1, ?) = ?"
            parameters += [len(path_prefix), path_prefix]
        if kind:
            sql += " AND kind = ?"
            parameters.append(kind)
        return [dict(row) for row in self._execute(sql + " ORDER BY id", parameters)]

    def request_counts(self, path_prefix="/api/data/"):
        """Return {"http_requests": n, "operations": m} of the log, by path prefix.

        A $batch of 100 creates counts as one HTTP request and 100 operations.
        """
        return {
            "http_requests": len(self.requests(path_prefix=path_prefix, kind=HTTP_REQUEST)),
            "operations": len(self.requests(path_prefix=path_prefix, kind=OPERATION)),
        }

    def clear_request_log(self):
        """Delete every request_log row, for example before a benchmark run."""
        self._execute("DELETE FROM request_log")


class _Transaction:
    """Lock plus BEGIN/COMMIT, re-entrant: only the outermost level commits."""

    def __init__(self, store):
        self.store = store
        self._depth = store._transaction_depth

    def __enter__(self):
        self.store._lock.acquire()
        depth = getattr(self._depth, "value", 0)
        if depth == 0:
            self.store._connection.execute("BEGIN IMMEDIATE")
        self._depth.value = depth + 1
        return self

    def __exit__(self, exc_type, exc, traceback):
        try:
            self._depth.value -= 1
            if self._depth.value == 0:
                if exc_type is None:
                    self.store._connection.execute("COMMIT")
                else:
                    self.store._connection.execute("ROLLBACK")
                    # The cache contains the rolled-back writes, so read the tables again.
                    self.store._cache.clear()
        finally:
            self.store._lock.release()
        return False
