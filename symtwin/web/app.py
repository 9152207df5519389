"""The live view's aiohttp application: page, JSON API, server-sent events, controls, /metrics, /healthz.

Runs inside the service's asyncio loop (:func:`start_web`). Nothing here blocks the loop for long:
snapshots are read by reference, filtered and serialised once per party per snapshot, scrypt and
history queries run in worker threads, and each SSE client holds at most one pending frame (a slow
client loses frames, it never makes the server buffer more).

Access: every ``/api`` route needs a session; every POST needs the session's CSRF token in the
``X-CSRF-Token`` header and, when the browser sends one, a same-origin ``Origin``. Controls need the
``operator`` role: mode (park-wide; any operator may set it, so that every party can stop the controller
writing to its plant) and override/release of setpoints **owned by the operator's party** only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from symtwin.governance.policy import ShareRecorder, SharingPolicy
from symtwin.runtime.metrics import Metrics
from symtwin.runtime.state import ServiceControl, Snapshot, SnapshotSource
from symtwin.web.auth import LoginLimiter, Session, SessionStore, User, users_from_config, verify_user
from symtwin.web.view import HistoryReader, PartyView, SiteInfo, trend

__all__ = ["MODES", "WebConfig", "create_app", "start_web"]

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
COOKIE = "symtwin_session"
MODES = ("off", "shadow", "auto")
POLL_S = 0.1  # how often the pump looks for a new snapshot: bounds the added push delay
KEEPALIVE_S = 15.0
REPEAT_S = 1.0  # a frame at least this often, even when the service publishes more slowly
WRITE_TIMEOUT_S = 10.0  # a client that accepts nothing for this long is disconnected
MAX_TREND_HOURS = 48.0

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


@dataclass
class WebConfig:
    """The live view's own settings, resolved from the site's ``web:`` section."""

    users: dict[str, User]
    session_ttl_s: float = 8 * 3600.0


def config_from_site(site: Any) -> WebConfig:
    """Users (password hashes resolved from the environment where the config says so) and session TTL."""
    from symtwin.config.schema import SecretRef
    from symtwin.secrets import resolve
    from symtwin.units import parse_quantity

    web_cfg = site.config.web
    rows = []
    for u in web_cfg.users:
        stored = u.password_hash
        if isinstance(stored, SecretRef):
            stored = resolve(stored, f"web user {u.name!r} password hash") or ""
        rows.append((u.name, u.party, u.role, stored))
    return WebConfig(users_from_config(rows), parse_quantity(web_cfg.session_ttl, "s"))


@dataclass(eq=False)
class _Client:
    session: Session
    event: asyncio.Event = field(default_factory=asyncio.Event)
    pending: bytes | None = None
    dropped: int = 0


class _Hub:
    """Latest snapshot → per-party frames → SSE clients; one pump task per app."""

    def __init__(
        self,
        source: SnapshotSource,
        views: Mapping[str, PartyView],
        history: HistoryReader | None,
        metrics: Metrics,
        recorder: ShareRecorder | None = None,
    ) -> None:
        self.source = source
        self.views = views
        self.history = history
        self.metrics = metrics
        self.recorder = recorder
        self.clients: dict[str, set[_Client]] = {p: set() for p in views}
        self.snapshot: Snapshot | None = None
        self.closing = False
        self.seeded = False
        self.frames_dropped = 0

    def current(self) -> Snapshot:
        snap = self.snapshot
        if snap is None:
            snap = self.snapshot = self.source.snapshot()
            if self.seeded:
                for v in self.views.values():
                    v.update(snap)
        return snap

    async def seed(self) -> None:
        """Aggregates from history first: a live sample fed earlier would make older ones count as late."""
        snap = self.source.snapshot()
        if self.history is not None:
            history = self.history
            for v in self.views.values():
                if v.agg_interval:
                    try:
                        await asyncio.to_thread(v.seed, history, snap.time)
                    except Exception:  # history is an aid here; the live stream fills aggregates anyway
                        log.exception("live view: seeding aggregates of %s from history failed", v.party)
        self.seeded = True
        self.snapshot = None
        self.current()

    def prepare(self, snap: Snapshot) -> None:
        """Feed every party's view and serialise the frames clients wait for (runs in a worker thread)."""
        for party, view in self.views.items():
            view.update(snap)
            if self.clients[party]:
                view.frame_event(snap)

    def publish(self, snap: Snapshot) -> None:
        """Hand the (already serialised) frames to the clients; a frame not yet sent is replaced."""
        self.snapshot = snap
        for party, view in self.views.items():
            clients = self.clients[party]
            if not clients:
                continue
            data = view.frame_event(snap)
            for c in clients:
                if c.pending is not None:
                    c.dropped += 1
                    self.frames_dropped += 1
                    self.metrics.inc("web_frames_dropped", "live-view frames dropped for slow clients")
                c.pending = data
                c.event.set()
            self.record(party, [snap.time], snap.time)

    def record(self, party: str, times: list[float], now: float) -> None:
        """Audit that ``party`` received other parties' data (the auditor coalesces per period)."""
        foreign = self.views[party].foreign
        if self.recorder is not None and foreign and times:
            try:
                self.recorder.shared(party, "live", foreign, times, now)
            except Exception:  # an audit-log failure is logged, never stops the live view
                log.exception("live view: recording a share with %s failed", party)

    def _new(self) -> Snapshot | None:
        snap = self.source.snapshot()
        return None if snap is self.snapshot or not self.seeded else snap

    def step(self) -> None:
        """One poll, all on the calling thread (tests)."""
        snap = self._new()
        if snap is not None:
            self.prepare(snap)
            self.publish(snap)

    async def run(self) -> None:
        try:
            await self.seed()
        except Exception:
            log.exception("live view: first snapshot failed")
        last_push = time.monotonic()
        while not self.closing:
            try:
                snap = self._new()
                if snap is not None:
                    # filtering and JSON for 1,000 tags take milliseconds per party: keep them off the loop
                    await asyncio.to_thread(self.prepare, snap)
                    self.publish(snap)
                    last_push = time.monotonic()
                elif self.snapshot is not None and time.monotonic() - last_push >= REPEAT_S:
                    # the service published nothing new: repeat the last frame so the page still hears
                    # from us at >= 1 Hz (its age shows in the frame's "wall" time)
                    self.publish(self.snapshot)
                    last_push = time.monotonic()
            except Exception:  # a bad snapshot must not end the live view
                log.exception("live view: snapshot update failed")
            await asyncio.sleep(POLL_S)

    def close(self) -> None:
        self.closing = True
        for clients in self.clients.values():
            for c in clients:
                c.event.set()


# --------------------------------------------------------------------------------------------- app


_APP_KEY_HUB = web.AppKey("hub", _Hub)
_SESSION = web.RequestKey("session", Session)
_APP_KEY_STATE = web.AppKey("state", dict)


def create_app(
    site: Any,
    snapshots: SnapshotSource,
    control: ServiceControl,
    metrics: Metrics,
    history: HistoryReader | None,
    *,
    policy: SharingPolicy | None = None,
    clock: Callable[[], float] = time.time,
    health: Callable[[], tuple[bool, Mapping[str, Any]]] | None = None,
    web_config: WebConfig | None = None,
    site_info: SiteInfo | None = None,
    recorder: ShareRecorder | None = None,
) -> web.Application:
    """The live view for ``site`` (a :class:`symtwin.config.LoadedSite`).

    ``policy`` defaults to the site's sharing policy; ``clock`` (wall time) drives session expiry and
    the login limiter; ``health`` answers ``/healthz`` (ok, details); ``web_config`` overrides the
    users and session TTL from ``site.config.web``; ``recorder`` (a
    :class:`symtwin.governance.audit.ShareAuditor`) records every delivery of other parties' data.
    """
    if policy is None:
        from symtwin.commands.governance import policy_from_site

        policy = policy_from_site(site)
    cfg = web_config if web_config is not None else config_from_site(site)
    if not cfg.users:
        log.warning(
            "live view: no users in web.users, so nobody can log in (see `symtwin web hash-password`)"
        )
    for u in cfg.users.values():
        if u.party not in policy.party_ids:
            raise ValueError(f"web user {u.name!r}: unknown party {u.party!r}")
    info = site_info if site_info is not None else SiteInfo.from_site(site)
    views = {p: PartyView(p, policy, info) for p in policy.party_ids}
    hub = _Hub(snapshots, views, history, metrics, recorder)
    sessions = SessionStore(cfg.session_ttl_s, clock)
    limiter = LoginLimiter(clock=clock)
    tag_specs = dict(getattr(site, "tags", {}) or {})

    @web.middleware
    async def guard(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = request.path
        if request.method == "POST":
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"{request.scheme}://{request.host}":
                return _error(403, "cross-origin request refused")
        if path.startswith("/api/") or path == "/logout":
            session = sessions.get(request.cookies.get(COOKIE))
            if session is None:
                return _error(401, "not logged in or session expired")
            if request.method == "POST":
                token = request.headers.get("X-CSRF-Token", "")
                if not hmac.compare_digest(token.encode(), session.csrf.encode()):
                    return _error(403, "missing or wrong CSRF token")
            request[_SESSION] = session
        try:
            resp = await handler(request)
        except _HTTPError as exc:
            resp = _error(exc.status, exc.message)
        if not resp.prepared:
            resp.headers.setdefault("Content-Security-Policy", CSP)
            resp.headers.setdefault("X-Content-Type-Options", "nosniff")
            resp.headers.setdefault("Referrer-Policy", "no-referrer")
            resp.headers.setdefault("X-Frame-Options", "DENY")
            if path.startswith("/api/") or path in ("/", "/login"):
                resp.headers.setdefault("Cache-Control", "no-store")
        return resp

    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[_APP_KEY_HUB] = hub
    app[_APP_KEY_STATE] = {"sse": weakref.WeakSet()}

    # ----------------------------------------------------------------- pages and login

    async def index(request: web.Request) -> web.StreamResponse:
        if sessions.get(request.cookies.get(COOKIE)) is None:
            raise web.HTTPFound("/login")
        return web.FileResponse(STATIC / "index.html")

    async def login_page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "login.html")

    async def login(request: web.Request) -> web.StreamResponse:
        body = await _json(request)
        name, password = body.get("user"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str) or not name or len(password) > 1024:
            return _error(400, "give user and password")
        wait = limiter.retry_after(name)
        if wait > 0:
            return _error(
                429, "too many failed logins; try again later", {"Retry-After": str(math.ceil(wait))}
            )
        user = await asyncio.to_thread(verify_user, cfg.users, name, password)
        if user is None:
            limiter.failed(name)
            log.warning("live view: failed login for %r from %s", name, request.remote)
            return _error(401, "wrong user or password")
        limiter.succeeded(name)
        old = request.cookies.get(COOKIE)
        if old:
            sessions.delete(old)  # a fresh id at every login (no session fixation)
        s = sessions.create(user)
        log.info("live view: %s (%s, %s) logged in from %s", user.name, user.party, user.role, request.remote)
        resp = web.json_response({"ok": True, "user": user.name, "party": user.party, "role": user.role})
        resp.set_cookie(
            COOKIE,
            s.id,
            httponly=True,
            samesite="Strict",
            secure=request.secure,
            path="/",
            max_age=int(cfg.session_ttl_s),
        )
        return resp

    async def logout(request: web.Request) -> web.StreamResponse:
        sessions.delete(request[_SESSION].id)
        resp = web.json_response({"ok": True})
        resp.del_cookie(COOKIE, path="/")
        return resp

    # ----------------------------------------------------------------- read API

    def _view(request: web.Request) -> tuple[Session, PartyView, Snapshot]:
        s: Session = request[_SESSION]
        return s, views[s.user.party], hub.current()

    async def api_session(request: web.Request) -> web.StreamResponse:
        s: Session = request[_SESSION]
        return web.json_response(
            {
                "user": s.user.name,
                "party": s.user.party,
                "role": s.user.role,
                "csrf": s.csrf,
                "expires": s.expires,
                "site": info.name,
            }
        )

    async def api_meta(request: web.Request) -> web.StreamResponse:
        _, view, snap = _view(request)
        return web.json_response(view.meta(snap))

    async def api_snapshot(request: web.Request) -> web.StreamResponse:
        s, view, snap = _view(request)
        hub.record(s.user.party, [snap.time], snap.time)
        return web.json_response(view.frame(snap))

    async def api_unit(request: web.Request) -> web.StreamResponse:
        s, view, snap = _view(request)
        unit = view.unit(snap, request.match_info["unit"])
        if unit is None:
            return _error(404, "no such unit")
        if any(view.policy.owner_of(t) != s.user.party for t in unit["tags"]):
            hub.record(s.user.party, [snap.time], snap.time)
        return web.json_response(unit)

    async def api_trend(request: web.Request) -> web.StreamResponse:
        s, view, snap = _view(request)
        tag = request.query.get("tag", "")
        try:
            hours = float(request.query.get("hours", "6"))
        except ValueError:
            return _error(400, "hours must be a number")
        if not (0 < hours <= MAX_TREND_HOURS):
            return _error(400, f"hours must be in (0, {MAX_TREND_HOURS:g}]")
        tv = snap.tags.get(tag)
        if tv is None or not view.visible(tag):
            return _error(404, "no such tag")  # same answer for withheld and unknown tags
        if history is None:
            return _error(503, "no history store configured")
        result = await asyncio.to_thread(trend, view, history, tag, tv.eng_unit, snap.time, hours)
        if result is None:
            return _error(404, "no such tag")
        if tv.owner != s.user.party and result["points"]:
            hub.record(s.user.party, [p[0] for p in result["points"]], snap.time)
        result["eng_unit"] = tv.eng_unit
        return web.json_response(result)

    async def api_events(request: web.Request) -> web.StreamResponse:
        s, view, snap = _view(request)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)
        client = _Client(s)
        app[_APP_KEY_STATE]["sse"].add(resp)
        hub.clients[s.user.party].add(client)
        metrics.inc("web_sse_connects", "live-view event streams opened")
        meta_sent = -1
        try:
            client.pending = view.frame_event(snap)
            while not hub.closing:
                if client.pending is None:
                    client.event.clear()
                    try:
                        await asyncio.wait_for(client.event.wait(), KEEPALIVE_S)
                    except TimeoutError:
                        await asyncio.wait_for(resp.write(b": keepalive\n\n"), WRITE_TIMEOUT_S)
                        continue
                if hub.closing:
                    break
                if not sessions.valid(s):
                    await resp.write(b"event: expired\ndata: {}\n\n")
                    break
                data, client.pending = client.pending, None
                if data is None:
                    continue
                if view.meta_version != meta_sent:
                    meta = json.dumps(view.meta(hub.current()), separators=(",", ":"))
                    meta_sent = view.meta_version
                    await asyncio.wait_for(
                        resp.write(f"event: meta\ndata: {meta}\n\n".encode()), WRITE_TIMEOUT_S
                    )
                await asyncio.wait_for(resp.write(data), WRITE_TIMEOUT_S)
        except (ConnectionResetError, TimeoutError, asyncio.CancelledError):
            pass
        finally:
            hub.clients[s.user.party].discard(client)
        return resp

    # ----------------------------------------------------------------- controls

    def _operator(request: web.Request) -> User:
        user: User = request[_SESSION].user
        if not user.is_operator:
            raise _HTTPError(403, "viewers cannot change anything")
        return user

    async def api_mode(request: web.Request) -> web.StreamResponse:
        user = _operator(request)
        body = await _json(request)
        mode, reason = body.get("mode"), _reason(body)
        if mode not in MODES:
            return _error(400, f"mode must be one of {', '.join(MODES)}")
        return _obey(
            lambda: control.set_mode(str(mode), user.name, reason),
            f"{user.name} ({user.party}) set mode {mode}",
            {"mode": mode},
        )

    def _own_setpoint(user: User, body: Mapping[str, Any]) -> str:
        tag = body.get("tag")
        if not isinstance(tag, str) or tag not in tag_specs:
            raise _HTTPError(404, "no such tag")
        spec = tag_specs[tag]
        if str(spec.direction) != "setpoint":
            raise _HTTPError(400, f"{tag} is a measurement, not a setpoint")
        if spec.owner != user.party:
            raise _HTTPError(
                403, f"{tag} belongs to {spec.owner}; only its owner's operators may override it"
            )
        return tag

    async def api_override(request: web.Request) -> web.StreamResponse:
        user = _operator(request)
        body = await _json(request)
        tag = _own_setpoint(user, body)
        spec = tag_specs[tag]
        value = body.get("value")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return _error(400, "value must be a finite number in the tag's engineering unit")
        value_si = spec.to_si(float(value))
        if spec.bounds_si is not None and not (spec.bounds_si[0] <= value_si <= spec.bounds_si[1]):
            lo, hi = (spec.from_si(b) for b in spec.bounds_si)
            return _error(
                400, f"{value:g} {spec.eng_unit} is outside the bounds [{lo:g}, {hi:g}] {spec.eng_unit}"
            )
        return _obey(
            lambda: control.override(tag, value_si, user.name, _reason(body)),
            f"{user.name} ({user.party}) override {tag} = {value:g} {spec.eng_unit}",
            {"tag": tag, "value": value},
        )

    async def api_release(request: web.Request) -> web.StreamResponse:
        user = _operator(request)
        body = await _json(request)
        tag = _own_setpoint(user, body)
        return _obey(
            lambda: control.release(tag, user.name, _reason(body)),
            f"{user.name} ({user.party}) release {tag}",
            {"tag": tag},
        )

    def _obey(action: Callable[[], None], what: str, echo: dict[str, Any]) -> web.StreamResponse:
        try:
            action()
        except (ValueError, KeyError, RuntimeError) as exc:
            log.warning("live view: refused by the service: %s: %s", what, exc)
            return _error(409, f"the service refused: {exc}")
        log.info("live view: %s", what)
        metrics.inc("web_commands", "operator commands accepted from the live view")
        return web.json_response({"ok": True, **echo})

    # ----------------------------------------------------------------- service endpoints

    async def metrics_route(request: web.Request) -> web.StreamResponse:
        metrics.set("web_sessions", "live-view sessions", len(sessions))
        metrics.set("web_clients", "live-view event streams", sum(len(c) for c in hub.clients.values()))
        return web.Response(
            text=metrics.render(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Prometheus-Format": "0.0.4"},
        )

    async def favicon(request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    async def healthz(request: web.Request) -> web.StreamResponse:
        if health is None:
            return web.json_response({"ok": True})
        ok, details = health()
        return web.json_response({"ok": ok, **details}, status=200 if ok else 503)

    app.router.add_get("/", index)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/api/session", api_session)
    app.router.add_get("/api/meta", api_meta)
    app.router.add_get("/api/snapshot", api_snapshot)
    app.router.add_get("/api/units/{unit}", api_unit)
    app.router.add_get("/api/trend", api_trend)
    app.router.add_get("/api/events", api_events)
    app.router.add_post("/api/mode", api_mode)
    app.router.add_post("/api/override", api_override)
    app.router.add_post("/api/release", api_release)
    app.router.add_get("/metrics", metrics_route)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_static("/static/", STATIC, follow_symlinks=False)

    async def on_startup(app: web.Application) -> None:
        app[_APP_KEY_STATE]["pump"] = asyncio.get_running_loop().create_task(hub.run(), name="live-view-pump")

    async def on_shutdown(app: web.Application) -> None:
        hub.close()
        for resp in list(app[_APP_KEY_STATE]["sse"]):
            with contextlib.suppress(Exception):
                await resp.write_eof()
        task = app[_APP_KEY_STATE].get("pump")
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    return app


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _reason(body: Mapping[str, Any]) -> str:
    r = body.get("reason", "")
    return r[:500] if isinstance(r, str) else ""


async def _json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _HTTPError(400, "the body must be JSON") from None
    if not isinstance(body, dict):
        raise _HTTPError(400, "the body must be a JSON object")
    return body


async def start_web(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve ``app`` on host:port inside the running loop; ``await runner.cleanup()`` to stop.

    With ``port=0`` the OS picks a free port; read it back with :func:`bound_port`.
    """
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port a runner listens on (useful after ``start_web(app, host, 0)``)."""
    for s in runner.sites:
        server = getattr(s, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("the runner has no listening socket")
