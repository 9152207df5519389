"""Passwords, sessions, login rate limiting and CSRF tokens for the live view.

Password hashes use stdlib scrypt (RFC 7914) in the text form ``scrypt$n$r$p$salt_b64$hash_b64``; the
config holds only that hash (or an ``{env: NAME}`` reference to it). Comparison is constant-time.
Sessions live only in server memory: a random id in an HttpOnly, SameSite=Strict cookie, an absolute
expiry (``web.session_ttl``) checked on every request, and a per-session CSRF token that every POST
must echo in the ``X-CSRF-Token`` header.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_N",
    "AuthError",
    "LoginLimiter",
    "Session",
    "SessionStore",
    "User",
    "hash_password",
    "verify_password",
]

DEFAULT_N = 2**14  # 16 MiB with r = 8: ~50 ms per hash here; OWASP's minimum for scrypt is 2**17/r=8/p=1
DEFAULT_R = 8
DEFAULT_P = 1
_MAX_N = 2**20
_MAXMEM = 1 << 30  # hashlib's default cap (32 MiB) refuses n = 2**15 with r = 8


class AuthError(ValueError):
    """A password hash that cannot be parsed (bad format or parameters out of range)."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    party: str
    role: str  # "operator" | "viewer"
    password_hash: str

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def hash_password(password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> str:
    """``scrypt$n$r$p$salt$hash`` for ``password`` with a fresh 16-byte salt and a 32-byte key."""
    if not password:
        raise AuthError("the password is empty")
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=32, maxmem=_MAXMEM)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        raise AuthError("expected 'scrypt$n$r$p$salt$hash' (run `symtwin web hash-password`)")
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError as exc:
        raise AuthError(f"malformed scrypt hash: {exc}") from None
    if n < 2 or n > _MAX_N or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16 or len(key) < 16:
        raise AuthError(f"scrypt parameters out of range: n={n} r={r} p={p} key={len(key)} bytes")
    return n, r, p, salt, key


def check_hash(stored: str) -> None:
    """Raise :class:`AuthError` unless ``stored`` is a usable hash (for config checks at start-up)."""
    _parse(stored)


def verify_password(password: str, stored: str) -> bool:
    """True if ``password`` matches ``stored`` (constant-time comparison of the derived keys)."""
    n, r, p, salt, key = _parse(stored)
    got = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=len(key), maxmem=_MAXMEM)
    return hmac.compare_digest(got, key)


# A hash to verify against when the user does not exist, so that the answer takes as long either way.
_DUMMY = f"scrypt${DEFAULT_N}${DEFAULT_R}${DEFAULT_P}${_b64(b'symtwin-no-user!')}${_b64(bytes(32))}"


def verify_user(users: dict[str, User], name: str, password: str) -> User | None:
    """The user if name and password match; spends one scrypt either way."""
    user = users.get(name)
    ok = verify_password(password, user.password_hash if user is not None else _DUMMY)
    return user if ok and user is not None else None


@dataclass(slots=True)
class Session:
    id: str
    user: User
    csrf: str
    created: float
    expires: float


class SessionStore:
    """Server-side sessions with an absolute lifetime [s]; ids and CSRF tokens are 256-bit random."""

    def __init__(
        self, ttl_s: float, clock: Callable[[], float] = time.time, max_sessions: int = 10_000
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._max = max_sessions
        self._sessions: dict[str, Session] = {}

    def create(self, user: User) -> Session:
        now = self._clock()
        self._prune(now)
        if len(self._sessions) >= self._max:  # drop the oldest rather than grow without bound
            oldest = min(self._sessions.values(), key=lambda s: s.created)
            del self._sessions[oldest.id]
        s = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now, now + self.ttl_s)
        self._sessions[s.id] = s
        return s

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        s = self._sessions.get(session_id)
        if s is None:
            return None
        if self._clock() >= s.expires:
            del self._sessions[session_id]
            return None
        return s

    def valid(self, session: Session) -> bool:
        return self._sessions.get(session.id) is session and self._clock() < session.expires

    def delete(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _prune(self, now: float) -> None:
        for sid in [sid for sid, s in self._sessions.items() if now >= s.expires]:
            del self._sessions[sid]

    def __len__(self) -> int:
        return len(self._sessions)


class LoginLimiter:
    """At most ``max_failures`` failed logins per user name within ``window_s`` [s]; then refuse until
    the oldest failure leaves the window (a lock-out that ends by itself, so no one can lock a user out
    for longer than the window)."""

    def __init__(
        self, max_failures: int = 5, window_s: float = 300.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, name: str) -> float:
        """Seconds until ``name`` may try again (0 when allowed now)."""
        q = self._failures.get(name)
        if not q:
            return 0.0
        now = self._clock()
        while q and q[0] <= now - self.window_s:
            q.popleft()
        if len(q) < self.max_failures:
            return 0.0
        return q[0] + self.window_s - now

    def failed(self, name: str) -> None:
        if len(self._failures) > 100_000:  # bound memory against name spraying
            self._failures.clear()
        self._failures.setdefault(name, deque()).append(self._clock())

    def succeeded(self, name: str) -> None:
        self._failures.pop(name, None)


def users_from_config(entries: Iterable[tuple[str, str, str, str]]) -> dict[str, User]:
    """(name, party, role, resolved hash) rows → users by name; every hash is checked here."""
    users: dict[str, User] = {}
    for name, party, role, stored in entries:
        try:
            check_hash(stored)
        except AuthError as exc:
            raise AuthError(f"web.users {name!r}: {exc}") from None
        users[name] = User(name, party, role, stored)
    return users
