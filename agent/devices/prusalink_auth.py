"""HTTP digest login as PrusaLink printers ask for it (RFC 7616, MD5).

Buddy firmware (MK4, XL, MINI) challenges with ``Digest realm="Printer API",
nonce="…", stale=false`` and no ``qop``; the Pi-based PrusaLink (poorwsgi) with
``qop="auth", algorithm="MD5-sess"`` and an ``opaque``. Both answer the first
request of a session 401 with a challenge, and a nonce that has grown too old
401 with ``stale=true``. ``DigestLogin`` keeps the last nonce for the session
so that every later request is answered at once, and counts its uses (``nc``)
as qop=auth requires.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass


class UnsupportedChallenge(ValueError):
    """The printer asks for a login this client cannot give (another scheme or algorithm)."""


def parse_auth_params(header: str) -> dict[str, str]:
    """The ``key=value`` pairs of an HTTP auth header after its scheme (values quoted or bare, keys lower-case)."""
    params: dict[str, str] = {}
    rest = header.split(" ", 1)[1] if " " in header.strip() else ""
    i = 0
    while i < len(rest):
        eq = rest.find("=", i)
        if eq < 0:
            break
        key = rest[i:eq].strip(" ,\t").lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            end = len(rest) if end < 0 else end
            params[key] = rest[i + 1:end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[key] = rest[i:end].strip()
            i = end
        i += 1
    return params


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    qop: str | None = None
    algorithm: str = "MD5"
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, header: str) -> Challenge:
        """From a ``WWW-Authenticate`` value; raises ``UnsupportedChallenge`` for anything but MD5 digest."""
        scheme = header.strip().split(" ", 1)[0].lower()
        if scheme != "digest":
            raise UnsupportedChallenge(f"the printer asks for {header.strip() or 'no'} login, not a digest")
        params = parse_auth_params(header)
        algorithm = params.get("algorithm", "MD5")
        if algorithm.upper() not in ("MD5", "MD5-SESS"):
            raise UnsupportedChallenge(f"the printer asks for digest algorithm {algorithm}, not MD5")
        qops = [q.strip() for q in params.get("qop", "").split(",") if q.strip()]
        if qops and "auth" not in qops:
            raise UnsupportedChallenge(f"the printer asks for digest qop {params['qop']}, not auth")
        if "nonce" not in params:
            raise UnsupportedChallenge("the printer's digest challenge has no nonce")
        return cls(realm=params.get("realm", ""), nonce=params["nonce"], qop="auth" if qops else None,
                   algorithm=algorithm, opaque=params.get("opaque"),
                   stale=params.get("stale", "false").lower() == "true")


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - HTTP digest is MD5 by definition


class DigestLogin:
    """A user name and password answering the printer's latest challenge."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self._password = password
        self._challenge: Challenge | None = None
        self._nc = 0

    @property
    def has_nonce(self) -> bool:
        return self._challenge is not None

    def challenged(self, challenge: Challenge) -> None:
        """Keep the printer's new nonce for the requests that follow."""
        self._challenge = challenge
        self._nc = 0

    def forget(self) -> None:
        self._challenge = None

    def header(self, method: str, uri: str) -> str | None:
        """The ``Authorization`` value for a request, or None before the printer has challenged us."""
        ch = self._challenge
        if ch is None:
            return None
        ha1 = _md5(f"{self.username}:{ch.realm}:{self._password}")
        cnonce = secrets.token_hex(8)
        if ch.algorithm.upper() == "MD5-SESS":
            ha1 = _md5(f"{ha1}:{ch.nonce}:{cnonce}")
        ha2 = _md5(f"{method}:{uri}")
        fields = [f'username="{self.username}"', f'realm="{ch.realm}"', f'nonce="{ch.nonce}"', f'uri="{uri}"']
        if ch.qop:
            self._nc += 1
            nc = f"{self._nc:08x}"
            response = _md5(f"{ha1}:{ch.nonce}:{nc}:{cnonce}:{ch.qop}:{ha2}")
            fields += [f"qop={ch.qop}", f"nc={nc}", f'cnonce="{cnonce}"']
        else:
            response = _md5(f"{ha1}:{ch.nonce}:{ha2}")
        fields.append(f'response="{response}"')
        if ch.algorithm.upper() != "MD5":  # poorwsgi insists on the algorithm it named
            fields.append(f"algorithm={ch.algorithm}")
        if ch.opaque is not None:
            fields.append(f'opaque="{ch.opaque}"')
        return "Digest " + ", ".join(fields)

