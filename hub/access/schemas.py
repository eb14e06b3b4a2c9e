"""Bodies of the account, session and token endpoints."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from hub.api.models import change_of

from .accounts import Role


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Login(_In):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class SessionInfo(BaseModel):
    name: str
    role: Role
    via: str = Field(description="'session' (cookie), 'token' or 'bootstrap'")
    csrf_token: str | None = Field(None, description="echo in X-CSRF-Token on every change made with the cookie")


class UserCreate(_In):
    username: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=10, max_length=1024)
    role: Role


class User(BaseModel):
    id: int
    username: str
    role: Role
    created_at: datetime
    disabled_at: datetime | None = None


UserUpdate = change_of(UserCreate, "UserUpdate", password=(str, Field(
    min_length=10, max_length=1024, description="a new password: the user's sessions end")), disabled=(bool, Field(
    description="true: the user can no longer log in and their sessions end at once")))


class SessionsEnded(BaseModel):
    ended: int = Field(description="how many of the user's sessions ended")


class TokenCreate(_In):
    name: str = Field(min_length=1, max_length=64)
    role: Role


class Token(BaseModel):
    id: int
    name: str
    role: Role
    prefix: str = Field(description="the token's first characters, to tell tokens apart")
    created_by: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(Token):
    token: str = Field(description="the bearer token; shown this once, only its hash is stored")
