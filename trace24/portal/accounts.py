"""The portal's own small database: accounts, sessions, login attempts and the access log.

What belongs here: who may log in, as what role over which scope, and the record of what each
account looked at. What does not: what a scope lets one see (``scopes.py``) or the pages.

It is a SQLite file beside the snapshot (``portal.sqlite``), never the working store: the portal
must keep running while a run writes, and DuckDB lets nobody else open a file that is written.
Passwords are hashed with Argon2id (argon2-cffi); a session is a random token, stored hashed, that
the browser holds in a signed cookie; a failed login is counted per account and per client.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

ROLES = ("office", "street", "district", "city", "epidemiologist")
# What a scope names, per role: a community's 12-digit code, a street's 9-digit code, a district's
# name as the tables write it; the city and the epidemiologists have none.
SCOPE_PATTERNS = {"office": re.compile(r"^\d{12}$"), "street": re.compile(r"^\d{9}$"),
                  "district": re.compile(r"^[^\x00-\x1f/\\]{1,40}$")}
USERNAME = re.compile(r"^[A-Za-z0-9_.-]{3,40}$")
SESSION_HOURS = 12
# A login refused this many times in the window, for an account or from a client, is refused
# outright until the window passes.
MAX_FAILURES, FAILURE_WINDOW_MINUTES = 5, 15

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY, role TEXT NOT NULL, scope TEXT, password_hash TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY, username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL, created_at TEXT NOT NULL, expires_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS login_attempts (
    attempted_at TEXT NOT NULL, username TEXT NOT NULL, client TEXT NOT NULL, succeeded INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS login_attempts_at ON login_attempts (attempted_at);
CREATE TABLE IF NOT EXISTS access_log (
    accessed_at TEXT NOT NULL, username TEXT, role TEXT, method TEXT NOT NULL, route TEXT NOT NULL,
    scope TEXT, status INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class AccountError(ValueError):
    """An account that cannot be made as asked (unknown role, malformed scope or name)."""


@dataclass(frozen=True)
class User:
    username: str
    role: str
    scope: str | None


@dataclass(frozen=True)
class Session:
    user: User
    csrf_token: str


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    """One SQLite file; a connection per thread (request threads never share one), kept open: a
    connection per call cost a page more than its query."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._hasher = PasswordHasher()
        self._local = threading.local()
        with self._connect() as con:
            con.executescript(SCHEMA)
            con.execute("INSERT OR IGNORE INTO settings VALUES ('secret_key', ?)", [secrets.token_hex(32)])
        # Verifying against this when the account does not exist costs what a real check costs, so
        # the time of a refusal does not tell whether a name exists.
        self._decoy = self._hasher.hash(secrets.token_hex(16))

    def _connect(self) -> sqlite3.Connection:
        """This thread's connection; use it as ``with self._connect() as con:`` (a transaction)."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=10)
            con.execute("PRAGMA foreign_keys = ON")
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")   # WAL stays consistent; a crash may lose the last log lines
            self._local.con = con
        return con

    @property
    def secret_key(self) -> str:
        with self._connect() as con:
            return con.execute("SELECT value FROM settings WHERE name = 'secret_key'").fetchone()[0]

    def add_user(self, username: str, role: str, scope: str | None, password: str) -> User:
        if not USERNAME.match(username):
            raise AccountError("a user name is 3-40 letters, digits, '.', '_' or '-'")
        if role not in ROLES:
            raise AccountError(f"role must be one of {', '.join(ROLES)}")
        pattern = SCOPE_PATTERNS.get(role)
        if pattern is None and scope:
            raise AccountError(f"a {role} account has no scope")
        if pattern is not None and not (scope and pattern.match(scope)):
            raise AccountError({"office": "an office's scope is its 12-digit community code",
                                "street": "a street's scope is its 9-digit code (the first 9 of its communities')",
                                "district": "a district's scope is its name as the lists write it (e.g. 武昌区)"}[role])
        if len(password) < 10:
            raise AccountError("a password has at least 10 characters")
        with self._connect() as con:
            if con.execute("SELECT 1 FROM users WHERE username = ?", [username]).fetchone():
                raise AccountError(f"user {username} exists")
            con.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                        [username, role, scope or None, self._hasher.hash(password), _now().isoformat()])
        return User(username, role, scope or None)

    def users(self) -> list[User]:
        with self._connect() as con:
            return [User(*row) for row in con.execute("SELECT username, role, scope FROM users ORDER BY username")]

    def is_locked_out(self, username: str, client: str) -> bool:
        since = (_now() - dt.timedelta(minutes=FAILURE_WINDOW_MINUTES)).isoformat()
        with self._connect() as con:
            failures = con.execute(
                """SELECT count(*) FILTER (WHERE username = ?), count(*) FILTER (WHERE client = ?)
                   FROM login_attempts WHERE attempted_at >= ? AND NOT succeeded""",
                [username, client, since]).fetchone()
        return max(failures) >= MAX_FAILURES

    def log_in(self, username: str, password: str, client: str) -> str | None:
        """A new session's token, or None for a wrong name or password (the attempt is counted)."""
        with self._connect() as con:
            row = con.execute("SELECT password_hash FROM users WHERE username = ?", [username]).fetchone()
            try:
                ok = self._hasher.verify(row[0] if row else self._decoy, password) and row is not None
            except (VerificationError, InvalidHashError):
                ok = False
            con.execute("INSERT INTO login_attempts VALUES (?, ?, ?, ?)", [_now().isoformat(), username, client, ok])
            if not ok:
                return None
            token, now = secrets.token_urlsafe(32), _now()
            con.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                        [_hash_token(token), username, secrets.token_urlsafe(32), now.isoformat(),
                         (now + dt.timedelta(hours=SESSION_HOURS)).isoformat()])
            con.execute("DELETE FROM sessions WHERE expires_at < ?", [now.isoformat()])
            return token

    def session(self, token: str) -> Session | None:
        with self._connect() as con:
            row = con.execute("""SELECT u.username, u.role, u.scope, s.csrf_token FROM sessions AS s
                                 JOIN users AS u USING (username)
                                 WHERE s.token_hash = ? AND s.expires_at > ?""",
                              [_hash_token(token), _now().isoformat()]).fetchone()
        return Session(User(*row[:3]), row[3]) if row else None

    def log_out(self, token: str) -> None:
        with self._connect() as con:
            con.execute("DELETE FROM sessions WHERE token_hash = ?", [_hash_token(token)])

    def record_access(self, user: User | None, method: str, route: str, scope: str | None, status: int) -> None:
        with self._connect() as con:
            con.execute("INSERT INTO access_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                        [_now().isoformat(), user.username if user else None, user.role if user else None,
                         method, route, scope, status])

    def access_log(self, limit: int = 500) -> list[tuple]:
        with self._connect() as con:
            return con.execute("""SELECT accessed_at, username, role, method, route, scope, status FROM access_log
                                  ORDER BY rowid DESC LIMIT ?""", [limit]).fetchall()


def sample_accounts(accounts: Accounts, communities: list) -> list[tuple[str, str, str | None, str]]:
    """One account per role for a demo, over the first district (by code) of ``communities``: two
    offices of one street (so one can be seen failing to reach the other's list), the street, the
    district, the city and an epidemiologist. Returns (user, role, scope, password); the passwords are
    random and shown once. Accounts that exist are left alone."""
    ordered = sorted(communities, key=lambda c: c.community_code)
    if not ordered:
        return []
    first = ordered[0]
    neighbour = next((c for c in ordered[1:] if c.street_code == first.street_code), None)
    wanted = [(f"office-{first.community_code}", "office", first.community_code),
              *([(f"office-{neighbour.community_code}", "office", neighbour.community_code)] if neighbour else []),
              (f"street-{first.street_code}", "street", first.street_code),
              ("district-1", "district", first.district), ("city", "city", None), ("epi", "epidemiologist", None)]
    existing = {u.username for u in accounts.users()}
    made = []
    for username, role, scope in wanted:
        if username in existing:
            continue
        password = secrets.token_urlsafe(12)
        accounts.add_user(username, role, scope, password)
        made.append((username, role, scope, password))
    return made
