"""Live-view passwords, sessions and the login limiter."""

from __future__ import annotations

import pytest

from symtwin.web.auth import (
    AuthError,
    LoginLimiter,
    SessionStore,
    User,
    check_hash,
    hash_password,
    verify_password,
    verify_user,
)

FAST_N = 2**10  # keep unit tests fast; the default cost is checked once below


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_hash_round_trip_and_format() -> None:
    h = hash_password("correct horse", n=FAST_N)
    parts = h.split("$")
    assert parts[0] == "scrypt" and parts[1:4] == [str(FAST_N), "8", "1"]
    assert verify_password("correct horse", h)
    assert not verify_password("correct horsE", h)
    assert not verify_password("", h)


def test_default_cost_and_fresh_salt() -> None:
    a, b = hash_password("pw"), hash_password("pw")
    assert a != b  # salted
    assert a.split("$")[1] == str(2**14)
    assert verify_password("pw", a) and verify_password("pw", b)


@pytest.mark.parametrize(
    "bad",
    [
        "pw",
        "scrypt$16384$8$1$c2FsdA",
        "bcrypt$16384$8$1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",
        "scrypt$1000$8$1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",  # n not a power of two
        "scrypt$16384$8$1$!!!$aGFzaGhhc2hoYXNoaGFzaA",
        "scrypt$16384$8$1$c2FsdA$c2hvcnQ",  # key too short
        "scrypt$2097152$8$1$c2FsdA$aGFzaGhhc2hoYXNoaGFzaA",  # cost above the cap (DoS)
    ],
)
def test_malformed_hashes_are_refused(bad: str) -> None:
    with pytest.raises(AuthError):
        check_hash(bad)


def test_empty_password_cannot_be_hashed() -> None:
    with pytest.raises(AuthError):
        hash_password("")


def test_verify_user_unknown_and_wrong() -> None:
    users = {"ann": User("ann", "factory", "operator", hash_password("s3cret", n=FAST_N))}
    assert verify_user(users, "ann", "s3cret") == users["ann"]
    assert verify_user(users, "ann", "wrong") is None
    assert verify_user(users, "bob", "s3cret") is None


def test_sessions_expire_server_side() -> None:
    clock = Clock()
    store = SessionStore(ttl_s=60.0, clock=clock)
    user = User("ann", "factory", "viewer", "x")
    s = store.create(user)
    assert len(s.id) >= 40 and len(s.csrf) >= 40 and s.id != s.csrf
    assert store.get(s.id) is s and store.valid(s)
    clock.t += 59.9
    assert store.get(s.id) is s
    clock.t += 0.2
    assert store.get(s.id) is None and not store.valid(s)
    assert store.get("forged") is None and store.get(None) is None


def test_session_store_is_bounded() -> None:
    clock = Clock()
    store = SessionStore(ttl_s=60.0, clock=clock, max_sessions=3)
    user = User("ann", "factory", "viewer", "x")
    first = store.create(user)
    for _ in range(5):
        clock.t += 1
        store.create(user)
    assert len(store) == 3
    assert store.get(first.id) is None


def test_login_limiter_locks_then_releases() -> None:
    clock = Clock()
    lim = LoginLimiter(max_failures=3, window_s=60.0, clock=clock)
    for _ in range(3):
        assert lim.retry_after("ann") == 0
        lim.failed("ann")
        clock.t += 1
    assert lim.retry_after("ann") == pytest.approx(57.0)
    assert lim.retry_after("bob") == 0  # per user
    clock.t += 57.0
    assert lim.retry_after("ann") == 0
    lim.failed("ann")
    lim.succeeded("ann")
    assert lim.retry_after("ann") == 0
