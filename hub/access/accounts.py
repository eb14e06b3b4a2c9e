"""Who may call the hub: users (panel logins), API tokens and panel sessions.

Passwords are argon2 hashes; tokens and session ids are random, so their SHA-256
digest is enough at rest and a token is shown only once, when it is created.
Tokens from the config (``auth.bootstrap_tokens``) are checked in memory and
never written to the database.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hub.config import AuthConfig
from hub.store import Store, timestamp, utcnow

log = structlog.get_logger("farmhand.hub.accounts")

TOKEN_PREFIX = "fh_"


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    VIEWER = "viewer"
    AGENT = "agent"


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    via: str  # "token", "bootstrap" or "session"
    csrf: str | None = None  # set for cookie sessions: unsafe methods must echo it


class AccountError(Exception):
    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class Accounts:
    def __init__(self, store: Store, config: AuthConfig) -> None:
        self.store = store
        self.config = config
        self._hasher = PasswordHasher()
        self._bootstrap = {digest(t.token.get_secret_value()): Principal(t.name, Role(t.role), "bootstrap")
                           for t in config.bootstrap_tokens}
        # Verifying against a real hash when the user does not exist keeps the
        # answer time the same, so a login does not reveal which names exist.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    # ------------------------------------------------------------------ first run

    def ensure_admin(self) -> str | None:
        """Create the first admin when there is no user; returns the password only if it was generated."""
        if self.store.one("SELECT id FROM users LIMIT 1") is not None:
            return None
        given = self.config.admin_password.get_secret_value() if self.config.admin_password else None
        password = given or secrets.token_urlsafe(12)
        self.create_user(self.config.admin_user, password, Role.ADMIN)
        log.info("admin_created", user=self.config.admin_user, password_from_config=given is not None)
        return None if given else password

    # ------------------------------------------------------------------ users

    def create_user(self, username: str, password: str, role: Role) -> dict:
        if self.store.one("SELECT id FROM users WHERE username = ?", (username,)) is not None:
            raise AccountError(409, "User exists", f"a user named {username!r} already exists")
        with self.store.transaction() as db:
            user_id = db.execute(
                "INSERT INTO users (username, password_hash, role, created_at) VALUES (?, ?, ?, ?)",
                (username, self._hasher.hash(password), role.value, utcnow()),
            ).lastrowid
        log.info("user_created", user=username, role=role.value)
        return self.user(user_id)

    def user(self, user_id: int) -> dict:
        row = self.store.one("SELECT id, username, role, created_at, disabled_at FROM users WHERE id = ?",
                             (user_id,))
        if row is None:
            raise AccountError(404, "User not found", f"no user {user_id}")
        return row

    def users(self) -> list[dict]:
        return self.store.all("SELECT id, username, role, created_at, disabled_at FROM users ORDER BY id")

    def _last_admin(self, user: dict) -> bool:
        if user["role"] != Role.ADMIN.value or user["disabled_at"] is not None:
            return False
        row = self.store.one("SELECT COUNT(*) AS n FROM users WHERE role = ? AND disabled_at IS NULL AND id != ?",
                             (Role.ADMIN.value, user["id"]))
        return row is not None and row["n"] == 0

    def update_user(self, user_id: int, change: dict[str, Any]) -> dict:
        """Change what ``change`` names: username, role, password, disabled. Disabling a user or giving them a
        new password ends their sessions (every request of theirs fails from now on); the last admin stays one."""
        user = self.user(user_id)
        if (change.get("disabled") or change.get("role", Role.ADMIN) != Role.ADMIN) and self._last_admin(user):
            raise AccountError(409, "Last admin", f"{user['username']} is the last admin; make another one first")
        name = change.get("username", user["username"])
        if name != user["username"] and self.store.one("SELECT id FROM users WHERE username = ?", (name,)):
            raise AccountError(409, "User exists", f"a user named {name!r} already exists")
        fields = {k: str(change[k]) for k in ("username", "role") if k in change}
        if "password" in change:
            fields["password_hash"] = self._hasher.hash(change["password"])
        if "disabled" in change:
            fields["disabled_at"] = (user["disabled_at"] or utcnow()) if change["disabled"] else None
        with self.store.transaction() as db:
            if fields:
                db.execute(f"UPDATE users SET {', '.join(f'{k} = ?' for k in fields)} WHERE id = ?",
                           (*fields.values(), user_id))
            if change.get("disabled") or "password" in change:
                db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
        log.info("user_updated", user=user["username"], fields=sorted(change))
        return self.user(user_id)

    def delete_user(self, user_id: int) -> None:
        user = self.user(user_id)
        if self._last_admin(user):
            raise AccountError(409, "Last admin", f"{user['username']} is the last admin; make another one first")
        with self.store.transaction() as db:
            db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,))
            db.execute("DELETE FROM users WHERE id = ?", (user_id,))
        log.info("user_deleted", user=user["username"])

    def end_sessions(self, user_id: int) -> int:
        """Log the user out everywhere; returns how many sessions ended."""
        user = self.user(user_id)
        ended = self.store.db.execute("DELETE FROM sessions WHERE user_id = ?", (user_id,)).rowcount
        log.info("sessions_ended", user=user["username"], count=ended)
        return ended

    def check_password(self, username: str, password: str) -> dict | None:
        row = self.store.one("SELECT * FROM users WHERE username = ? AND disabled_at IS NULL", (username,))
        try:
            self._hasher.verify(row["password_hash"] if row else self._dummy_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        return row

    # ------------------------------------------------------------------ tokens

    def create_token(self, name: str, role: Role, created_by: str) -> tuple[dict, str]:
        """Returns the stored row and the token itself, which is never retrievable again."""
        secret = new_token()
        with self.store.transaction() as db:
            token_id = db.execute(
                "INSERT INTO api_tokens (name, role, token_hash, prefix, created_by, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (name, role.value, digest(secret), secret[:8], created_by, utcnow()),
            ).lastrowid
        log.info("token_created", token_id=token_id, name=name, role=role.value, by=created_by)
        return self.token(token_id), secret

    def token(self, token_id: int) -> dict:
        row = self.store.one("SELECT id, name, role, prefix, created_by, created_at, last_used_at, revoked_at"
                             " FROM api_tokens WHERE id = ?", (token_id,))
        if row is None:
            raise AccountError(404, "Token not found", f"no token {token_id}")
        return row

    def tokens(self) -> list[dict]:
        return self.store.all("SELECT id, name, role, prefix, created_by, created_at, last_used_at, revoked_at"
                              " FROM api_tokens ORDER BY id")

    def revoke_token(self, token_id: int) -> dict:
        row = self.token(token_id)
        if row["revoked_at"] is None:
            self.store.db.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (utcnow(), token_id))
            log.info("token_revoked", token_id=token_id, name=row["name"])
        return self.token(token_id)

    def by_token(self, secret: str) -> Principal | None:
        hashed = digest(secret)
        for known, principal in self._bootstrap.items():
            if hmac.compare_digest(known, hashed):
                return principal
        row = self.store.one("SELECT id, name, role FROM api_tokens WHERE token_hash = ? AND revoked_at IS NULL",
                             (hashed,))
        if row is None:
            return None
        self.store.db.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (utcnow(), row["id"]))
        return Principal(row["name"], Role(row["role"]), "token")

    # ------------------------------------------------------------------ sessions

    def open_session(self, user: dict) -> tuple[str, str]:
        """Returns (session id for the cookie, CSRF token the page echoes in a header)."""
        sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        expires = timestamp(datetime.now(UTC) + timedelta(hours=self.config.session_hours))
        with self.store.transaction() as db:
            db.execute("DELETE FROM sessions WHERE expires_at < ?", (utcnow(),))
            db.execute("INSERT INTO sessions (id_hash, user_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                       (digest(sid), user["id"], csrf, utcnow(), expires))
        log.info("session_opened", user=user["username"])
        return sid, csrf

    def by_session(self, sid: str) -> Principal | None:
        row = self.store.one(
            "SELECT u.username, u.role, s.csrf FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.id_hash = ? AND s.expires_at > ? AND u.disabled_at IS NULL", (digest(sid), utcnow()))
        return Principal(row["username"], Role(row["role"]), "session", row["csrf"]) if row else None

    def close_session(self, sid: str) -> None:
        self.store.db.execute("DELETE FROM sessions WHERE id_hash = ?", (digest(sid),))
