"""Fixed credentials for test hubs: one bootstrap token per role and a known admin password."""

from __future__ import annotations

from typing import Any

ADMIN_PASSWORD = "test-admin-password"
TOKENS = {role: f"fh_test_{role}_token_0123456789abcdef" for role in ("admin", "operator", "viewer", "agent")}
ADMIN_TOKEN = TOKENS["admin"]
AGENT_TOKEN = TOKENS["agent"]


def auth_config(**extra: Any) -> dict[str, Any]:
    """The `auth` section of a test hub's config."""
    return {
        "admin_password": ADMIN_PASSWORD,
        "bootstrap_tokens": [{"name": f"test-{role}", "role": role, "token": token} for role, token in TOKENS.items()],
        **extra,
    }


def bearer(role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}
