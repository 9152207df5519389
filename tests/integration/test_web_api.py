"""The live view's HTTP API on a real loopback port: login, sessions, CSRF, roles, per-party filtering, SSE.

The backend is the demo harness (the real web app; a moving snapshot source stands in for the runtime).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.support.web_demo import LiveViewBackend, serve_demo

# utility's tags that no rule shares with factory, and the one shared with it only as 1 h aggregates
UTILITY_PRIVATE = (
    "utility.hx.t_out",
    "utility.storage.top_t",
    "utility.storage.charge_sp",
    "utility.boiler.load_sp",
)
UTILITY_AGGREGATED = "utility.town.heat"


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[LiveViewBackend]:
    with serve_demo(workdir=tmp_path) as b:
        yield b


class Client:
    def __init__(self, backend: LiveViewBackend, http: aiohttp.ClientSession) -> None:
        self.b = backend
        self.http = http
        self.csrf = ""

    async def login(self, name: str, password: str | None = None) -> aiohttp.ClientResponse:
        pw = self.b.users[name].password if password is None else password
        r = await self.http.post(self.b.url + "/login", json={"user": name, "password": pw})
        if r.status == 200:
            self.csrf = (await self.get_json("/api/session"))["csrf"]
        return r

    async def get_json(self, path: str) -> dict:
        async with self.http.get(self.b.url + path) as r:
            assert r.status == 200, (path, r.status, await r.text())
            return await r.json()

    async def post(
        self, path: str, body: dict, *, csrf: str | None = None, origin: str | None = None
    ) -> tuple[int, dict]:
        headers = {"X-CSRF-Token": self.csrf if csrf is None else csrf}
        if origin is not None:
            headers["Origin"] = origin
        async with self.http.post(self.b.url + path, json=body, headers=headers) as r:
            return r.status, await r.json()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
        yield s


async def read_events(http: aiohttp.ClientSession, url: str, seconds: float) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = []
    async with http.get(url + "/api/events") as r:
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        end = time.monotonic() + seconds
        name = ""
        while time.monotonic() < end:
            try:
                line = await asyncio.wait_for(r.content.readline(), max(0.05, end - time.monotonic()))
            except TimeoutError:
                break
            text = line.decode().rstrip("\n")
            if text.startswith("event: "):
                name = text[7:]
            elif text.startswith("data: "):
                events.append((name, json.loads(text[6:])))
    return events


async def test_everything_needs_a_session(backend: LiveViewBackend, http: aiohttp.ClientSession) -> None:
    for path in (
        "/api/snapshot",
        "/api/meta",
        "/api/units/hx",
        "/api/trend?tag=factory.heat",
        "/api/events",
        "/api/session",
    ):
        async with http.get(backend.url + path) as r:
            assert r.status == 401, path
    async with http.get(backend.url + "/", allow_redirects=False) as r:
        assert r.status == 302 and r.headers["Location"] == "/login"
    async with http.post(backend.url + "/api/mode", json={"mode": "off"}) as r:
        assert r.status == 401
    async with http.get(backend.url + "/login") as r:
        assert r.status == 200
        assert "default-src 'self'" in r.headers["Content-Security-Policy"]
        assert r.headers["X-Frame-Options"] == "DENY"
    async with http.get(backend.url + "/metrics") as r:
        assert r.status == 200 and "# TYPE" in await r.text()
    async with http.get(backend.url + "/healthz") as r:
        assert r.status == 200 and (await r.json())["ok"] is True


async def test_login_cookie_and_rate_limit(backend: LiveViewBackend, http: aiohttp.ClientSession) -> None:
    c = Client(backend, http)
    r = await c.login("factory_op")
    assert r.status == 200
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    s = await c.get_json("/api/session")
    assert (s["user"], s["party"], s["role"]) == ("factory_op", "factory", "operator")

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        o = Client(backend, other)
        for _ in range(5):
            assert (await o.login("utility_vi", "wrong")).status == 401
        r = await o.login("utility_vi")  # right password, but locked out for now
        assert r.status == 429 and int(r.headers["Retry-After"]) > 0
        assert (await o.login("utility_op")).status == 200  # the limit is per user
        assert (await o.login("nobody", "x")).status == 401


async def test_csrf_and_origin_are_checked(backend: LiveViewBackend, http: aiohttp.ClientSession) -> None:
    c = Client(backend, http)
    await c.login("utility_op")
    assert (await c.post("/api/mode", {"mode": "shadow"}, csrf=""))[0] == 403
    assert (await c.post("/api/mode", {"mode": "shadow"}, csrf="forged"))[0] == 403
    assert (await c.post("/api/mode", {"mode": "shadow"}, origin="http://evil.example"))[0] == 403
    assert backend.control is not None and backend.control.commands == []
    status, _ = await c.post("/api/mode", {"mode": "shadow"}, origin=backend.url)
    assert status == 200
    async with http.post(
        backend.url + "/login",
        json={"user": "utility_op", "password": "x"},
        headers={"Origin": "http://evil.example"},
    ) as r:
        assert r.status == 403


async def test_operator_commands_are_obeyed(backend: LiveViewBackend, http: aiohttp.ClientSession) -> None:
    c = Client(backend, http)
    await c.login("utility_op")
    assert await c.post("/api/mode", {"mode": "off", "reason": "test"}) == (200, {"ok": True, "mode": "off"})
    status, body = await c.post("/api/override", {"tag": "utility.boiler.load_sp", "value": 42.5})
    assert status == 200, body
    await asyncio.sleep(0.8)  # next snapshots carry the commands
    snap = await c.get_json("/api/snapshot")
    assert snap["mode"] == "off"
    value, _, _, _, override, _ = snap["tags"]["utility.boiler.load_sp"]
    assert override == pytest.approx(42.5) and value == pytest.approx(42.5)
    assert (await c.post("/api/release", {"tag": "utility.boiler.load_sp"}))[0] == 200
    await asyncio.sleep(0.8)
    assert (await c.get_json("/api/snapshot"))["tags"]["utility.boiler.load_sp"][4] is None
    assert backend.control is not None
    assert backend.control.commands == [
        ("mode", "off", "utility_op"),
        ("override", "utility.boiler.load_sp", repr(0.425), "utility_op"),
        ("release", "utility.boiler.load_sp", "utility_op"),
    ]


async def test_refused_commands(backend: LiveViewBackend, http: aiohttp.ClientSession) -> None:
    c = Client(backend, http)
    await c.login("utility_op")
    assert (await c.post("/api/mode", {"mode": "turbo"}))[0] == 400
    assert (await c.post("/api/override", {"tag": "factory.use_sp", "value": 10}))[0] == 403  # factory's
    assert (await c.post("/api/override", {"tag": "utility.town.heat", "value": 1}))[0] == 400  # measurement
    assert (await c.post("/api/override", {"tag": "utility.boiler.load_sp", "value": 120}))[
        0
    ] == 400  # bounds
    assert (await c.post("/api/override", {"tag": "utility.boiler.load_sp", "value": "50"}))[0] == 400
    assert (await c.post("/api/override", {"tag": "nope", "value": 1}))[0] == 404
    assert (await c.post("/api/release", {"tag": "factory.use_sp"}))[0] == 403

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        v = Client(backend, other)
        await v.login("utility_vi")
        assert (await v.post("/api/mode", {"mode": "off"}))[0] == 403
        assert (await v.post("/api/override", {"tag": "utility.boiler.load_sp", "value": 40}))[0] == 403
        assert (await v.post("/api/release", {"tag": "utility.boiler.load_sp"}))[0] == 403
    assert backend.control is not None and backend.control.commands == []


async def test_a_party_never_receives_another_partys_private_tag(
    backend: LiveViewBackend, http: aiohttp.ClientSession
) -> None:
    c = Client(backend, http)
    await c.login("factory_vi")
    await asyncio.sleep(0.5)
    bodies = []
    for path in (
        "/api/snapshot",
        "/api/meta",
        "/api/units/storage",
        "/api/units/hx",
        "/api/units/town",
        "/api/units/factory_heat",
    ):
        bodies.append(json.dumps(await c.get_json(path)))
    for tag in (*UTILITY_PRIVATE, UTILITY_AGGREGATED + "x"):
        async with http.get(backend.url + f"/api/trend?tag={tag}&hours=3") as r:
            assert r.status == 404  # same answer as for a tag that does not exist
    events = await read_events(http, backend.url, 2.5)
    frames = [e for name, e in events if name == "frame"]
    assert len(frames) >= 3  # ≥ 1 Hz
    bodies += [json.dumps(e) for _, e in events]
    text = "\n".join(bodies)
    for tag in UTILITY_PRIVATE:
        assert tag not in text
    for f in frames:
        assert UTILITY_AGGREGATED not in f["tags"]  # never raw
        assert set(f["tags"]) == {"factory.heat", "factory.use_sp"}
        assert f["states"] == {}  # the tank and exchanger belong to utility
    meta = next(e for name, e in events if name == "meta")
    assert meta["tags"][UTILITY_AGGREGATED]["resolution"] == "aggregated"
    agg = frames[-1]["agg"][UTILITY_AGGREGATED]  # seeded from history: the last closed hour
    end, mean, lo, hi = agg
    assert end % 3600 == 0 and end <= time.time() and lo <= mean <= hi
    t = await c.get_json(f"/api/trend?tag={UTILITY_AGGREGATED}&hours=3")
    assert t["resolution"] == "aggregated" and t["interval_s"] == 3600.0
    assert all(p[0] % 3600 == 0 for p in t["points"])

    # the receiver sees the factory's shared tag raw, and its own private tags
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:
        u = Client(backend, other)
        await u.login("utility_vi")
        snap = await u.get_json("/api/snapshot")
        assert "factory.heat" in snap["tags"] and "factory.use_sp" not in snap["tags"]
        assert "utility.storage.top_t" in snap["tags"]
        assert len(snap["states"]["storage"]) == 10
        raw = await u.get_json("/api/trend?tag=factory.heat&hours=3")
        assert raw["resolution"] == "raw" and len(raw["points"]) > 100


async def test_push_rate_and_delay(backend: LiveViewBackend, http: aiohttp.ClientSession) -> None:
    c = Client(backend, http)
    await c.login("utility_vi")
    events = await read_events(http, backend.url, 3.2)
    frames = [e for name, e in events if name == "frame"]
    assert len(frames) >= 5  # the demo publishes every 0.5 s
    delays = [f["sent"] - f["wall"] for f in frames[1:]]
    assert max(delays) < 1.0
    assert len({f["cycle"] for f in frames}) == len(frames)  # each snapshot once


async def test_session_expiry_and_logout(tmp_path: Path) -> None:
    with serve_demo(workdir=tmp_path, session_ttl_s=1.5) as b:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            c = Client(b, http)
            await c.login("factory_op")
            events = await read_events(http, b.url, 3.0)
            assert events[-1][0] == "expired"  # the stream ends when the session does
            async with http.get(b.url + "/api/snapshot") as r:
                assert r.status == 401
            await c.login("factory_op")
            assert (await c.post("/logout", {}))[0] == 200
            async with http.get(b.url + "/api/snapshot") as r:
                assert r.status == 401


async def test_frames_repeat_at_1_hz_when_the_service_publishes_slowly(tmp_path: Path) -> None:
    with serve_demo(workdir=tmp_path, period_s=10.0) as b:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            c = Client(b, http)
            await c.login("factory_vi")
            frames = [e for name, e in await read_events(http, b.url, 3.3) if name == "frame"]
    assert len(frames) >= 3
    assert len({f["cycle"] for f in frames}) == 1  # the same snapshot, repeated (the page shows its age)
    assert time.time() - frames[-1]["wall"] >= 2.0
