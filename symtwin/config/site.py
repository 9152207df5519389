"""Load, check and convert a site config: from YAML text to frozen SI objects the service runs on.

All checks report every problem found (not only the first) with file, line, column, field path, what was
expected and what to do. Config validation makes no network connections.
"""

from __future__ import annotations

import ast
import csv
import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from symtwin.config import schema
from symtwin.config.yamlpos import Located, Path_, Position, YamlError, load_yaml
from symtwin.units import UNITS, UnitError, compatible_units, parse_quantity, split_suffix, to_si
from twin.catalog import UNIT_MODELS, PortDirection, QuantityKind
from twin.spec import ConnectionSpec, ParkSpec, Profile, UnitSpec

EXIT_CONFIG_ERROR = 2


@dataclass(frozen=True, slots=True)
class Issue:
    path: Path_
    message: str
    hint: str = ""
    position: Position | None = None

    def render(self, file: str) -> str:
        where = f"{file}:{self.position.line}:{self.position.column}" if self.position else file
        field_path = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in self.path).replace(".[", "[")
        text = f"{where}: {field_path or '(top level)'}: {self.message}"
        if self.hint:
            text += f"\n    what to do: {self.hint}"
        return text


class ConfigError(Exception):
    """The config cannot be used; ``str()`` lists every problem with file, line and field."""

    def __init__(self, file: str, issues: list[Issue]) -> None:
        self.file = file
        self.issues = issues
        super().__init__(self.render())

    def render(self, limit: int = 30) -> str:
        head = f"{self.file}: {len(self.issues)} problem{'s' if len(self.issues) != 1 else ''} in the site config"
        body = [i.render(self.file) for i in self.issues[:limit]]
        if len(self.issues) > limit:
            body.append(f"... and {len(self.issues) - limit} more")
        return "\n".join([head, *body])


@dataclass(frozen=True)
class TagSpec:
    """A tag with everything converted to SI. ``to_si``/``from_si`` convert wire values (eng_unit)."""

    id: str
    owner: str
    unit: str
    quantity: str
    si_unit: str
    eng_unit: str
    direction: schema.Direction
    max_age_s: float
    noise_si: float
    bounds_si: tuple[float, float] | None
    rate_limit_si_per_s: float | None
    safe_value_si: float | None
    binding: schema.Binding

    @property
    def key(self) -> str:
        """The twin's name of the quantity this tag measures or sets: ``<unit>.<quantity>``."""
        return f"{self.unit}.{self.quantity}"

    def to_si(self, value: float) -> float:
        return to_si(value, self.eng_unit)

    def from_si(self, value: float) -> float:
        d = UNITS[self.eng_unit]
        return (value - d.offset) / d.factor


@dataclass(frozen=True)
class MqttForecastSpec:
    """An MQTT forecast source in SI: values on the wire are in ``unit`` (``to_si`` applies)."""

    topic: str
    encoding: str  # "json" | "sparkplug"
    unit: str
    max_age_s: float
    points: int | None
    step_s: float
    metric: str


@dataclass(frozen=True)
class CsvForecastSpec:
    path: Path  # resolved against the config file's folder; it may appear only at run time
    unit: str
    max_age_s: float


@dataclass(frozen=True)
class ModelForecastSpec:
    path: Path  # the model JSON (exists at load time)
    max_age_s: float
    temperature_profile: str | None


@dataclass(frozen=True)
class ForecastSpec:
    """One ``forecasts:`` entry, checked and in SI: the chain mqtt → csv → model → profile for ``series``.

    si_unit: SI unit of the series (what the controller gets); bounds_si: values outside are dropped;
    profile: the last-resort profile id, or None for the series' own profile or constant price.
    """

    id: str
    series: str
    si_unit: str
    bounds_si: tuple[float, float] | None
    max_gap_s: float
    profile: str | None
    mqtt: MqttForecastSpec | None
    csv: CsvForecastSpec | None
    model: ModelForecastSpec | None


@dataclass
class LoadedSite:
    """A validated site: the schema object plus SI conversions. Build with :func:`load_site`."""

    path: Path
    config: schema.SiteConfig
    unit_params: dict[str, dict[str, float]]
    tags: dict[str, TagSpec]
    profiles: dict[str, Profile]
    prices: dict[str, float | str] = field(default_factory=dict)
    forecasts: dict[str, ForecastSpec] = field(default_factory=dict)  # by forecast id, in config order

    @property
    def name(self) -> str:
        return self.config.site.name

    @property
    def parties(self) -> list[schema.Party]:
        return self.config.parties

    @property
    def units(self) -> list[schema.Unit]:
        return self.config.units

    @cached_property
    def unit_by_id(self) -> dict[str, schema.Unit]:
        return {u.id: u for u in self.config.units}

    @cached_property
    def connection_by_id(self) -> dict[str, schema.Connection]:
        return {c.id: c for c in self.config.connections}

    def exchange_parties(self, exchange: schema.Exchange) -> tuple[str, str]:
        """(supplier, receiver) of an exchange: the owners of its connection's two ends."""
        conn = self.connection_by_id[exchange.connection]
        return (self.unit_by_id[conn.source.split(".")[0]].owner, self.unit_by_id[conn.target.split(".")[0]].owner)

    def park_spec(self) -> ParkSpec:
        units = tuple(
            UnitSpec(u.id, u.model, u.owner, dict(self.unit_params[u.id]), dict(u.profiles)) for u in self.config.units
        )
        conns = []
        for c in self.config.connections:
            su, sp = c.source.split(".")
            tu, tp = c.target.split(".")
            port = UNIT_MODELS[self.unit_by_id[su].model].port(sp)
            assert port is not None  # checked at load time
            conns.append(ConnectionSpec(su, sp, tu, tp, str(port.medium)))
        return ParkSpec(self.config.site.name, units, tuple(conns), dict(self.profiles))


# --------------------------------------------------------------------------------------------------- loading


def load_site(path: str | Path) -> LoadedSite:
    """Read, validate and convert a site config; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(file, [Issue((), "file not found", "check the path; configs/ holds the examples")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(file, [Issue((), f"cannot read the file: {exc}", "")]) from None
    try:
        located = load_yaml(text, file)
    except YamlError as exc:
        hint = "fix the YAML syntax at that place (indentation, a missing ':' or closing bracket)"
        raise ConfigError(file, [Issue((), exc.message, hint, exc.position)]) from None
    if not isinstance(located.data, dict):
        raise ConfigError(file, [Issue((), "the top level must be a mapping (site:, parties:, units:, ...)", "")])
    try:
        cfg = schema.SiteConfig.model_validate(located.data)
    except ValidationError as exc:
        raise ConfigError(file, [_from_pydantic(e, located) for e in exc.errors()]) from None
    checker = _Checker(cfg, located, path)
    loaded = checker.run()
    if checker.issues:
        raise ConfigError(file, checker.issues)
    assert loaded is not None
    return loaded


def _document_path(loc: tuple[Any, ...], data: Any) -> Path_:
    """Drop the union-member names pydantic puts into ``loc`` so the path names places in the document."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            out.append(part)
            node = node[part]
        elif i == len(loc) - 1 or (isinstance(node, dict) and not isinstance(loc[i + 1], str)):
            out.append(part)
            node = None
        # else: a union member's name; skip it
    return tuple(out)


def _from_pydantic(err: Any, located: Located) -> Issue:
    loc = _document_path(tuple(err["loc"]), located.data)
    kind = err["type"]
    msg = err["msg"]
    if kind == "extra_forbidden":
        hint = "remove it or correct its spelling; `symtwin schema` lists the allowed keys"
        return Issue(loc, f"unknown key {loc[-1]!r}", hint, located.where(loc))
    if kind == "missing":
        return Issue(loc, "required field is missing", f"add '{loc[-1]}:' here", located.where(loc[:-1]) or None)
    expected = msg[0].lower() + msg[1:] if msg else kind
    # Never echo what was written in a secret's place: the message ends up in logs and the journal.
    got = "" if any(str(p) in _SECRET_FIELDS for p in loc) else f" (got {err.get('input')!r})"
    return Issue(loc, f"{expected}{got}", "see `symtwin schema` for this field", located.where(loc))


_SECRET_FIELDS = {"password", "token", "password_hash"}


_SAFE_FUNCS: dict[str, Callable[..., float]] = {
    "sin": math.sin, "cos": math.cos, "exp": math.exp, "log": math.log, "sqrt": math.sqrt,
    "abs": abs, "min": min, "max": max, "floor": math.floor,
}
_SAFE_OPS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Pow: operator.pow, ast.Mod: operator.mod, ast.USub: operator.neg, ast.UAdd: operator.pos,
}


def compile_formula(text: str) -> Callable[[float], float]:
    """A formula in ``t`` [s] with + - * / ** %, sin cos exp log sqrt abs min max floor, pi. No names else."""
    tree = ast.parse(text, mode="eval")

    def ev(node: ast.AST, t: float) -> Any:
        if isinstance(node, ast.Expression):
            return ev(node.body, t)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return node.value
        if isinstance(node, ast.Name):
            if node.id == "t":
                return t
            if node.id == "pi":
                return math.pi
            raise ValueError(f"unknown name {node.id!r} (allowed: t, pi)")
        if isinstance(node, ast.BinOp) and type(node.op) in _SAFE_OPS:
            return _SAFE_OPS[type(node.op)](ev(node.left, t), ev(node.right, t))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _SAFE_OPS:
            return _SAFE_OPS[type(node.op)](ev(node.operand, t))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _SAFE_FUNCS:
            return _SAFE_FUNCS[node.func.id](*(ev(a, t) for a in node.args))
        raise ValueError(f"not allowed in a formula: {ast.dump(node)[:60]}")

    ev(tree, 0.0)  # fail now, at load time, rather than during a run
    return lambda t: float(ev(tree, t))


class _Checker:
    def __init__(self, cfg: schema.SiteConfig, located: Located, path: Path) -> None:
        self.cfg = cfg
        self.located = located
        self.path = path
        self.base = path.parent
        self.issues: list[Issue] = []
        self._csv_cache: dict[Path, tuple[list[str], list[dict[str, str]]]] = {}

    def add(self, path: Path_, message: str, hint: str = "") -> None:
        self.issues.append(Issue(path, message, hint, self.located.where(path)))

    def quantity(self, path: Path_, value: Any, si_unit: str) -> float | None:
        try:
            return parse_quantity(value, si_unit)
        except UnitError as exc:
            self.add(path, str(exc), f"write it as '<number> <unit>' with a unit of {si_unit}")
            return None

    def run(self) -> LoadedSite | None:
        cfg = self.cfg
        self._unique("parties", [p.id for p in cfg.parties])
        self._unique("units", [u.id for u in cfg.units])
        self._unique("connections", [c.id for c in cfg.connections])
        self._unique("exchanges", [e.id for e in cfg.exchanges])
        self._unique("tags", [t.id for t in cfg.tags])
        self._unique("profiles", [p.id for p in cfg.profiles])
        self._unique("contracts", [c.id for c in cfg.contracts])
        self._unique("forecasts", [f.id for f in cfg.forecasts])
        parties = {p.id for p in cfg.parties}
        profiles = self._profiles()
        unit_params = self._units(parties, set(profiles) | {p.id for p in cfg.profiles})
        self._connections()
        self._exchanges()
        tags = self._tags(parties)
        self._controller({p.id for p in cfg.profiles})
        forecasts = self._forecasts(profiles, {p.id for p in cfg.profiles})
        self._sharing()
        self._web(parties)
        if self.issues:
            return None
        return LoadedSite(self.path, cfg, unit_params, tags, profiles, forecasts=forecasts)

    def _unique(self, section: str, ids: Iterable[str]) -> None:
        seen: dict[str, int] = {}
        for i, ident in enumerate(ids):
            if ident in seen:
                self.add((section, i, "id"), f"duplicate id {ident!r} (also at {section}[{seen[ident]}])",
                         "give every entry of a section its own id")
            else:
                seen[ident] = i

    def _units(self, parties: set[str], profile_ids: set[str]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for i, u in enumerate(self.cfg.units):
            base: Path_ = ("units", i)
            if u.owner not in parties:
                self.add((*base, "owner"), f"unknown party {u.owner!r}", f"use one of: {', '.join(sorted(parties))}")
            model = UNIT_MODELS.get(u.model)
            if model is None:
                self.add((*base, "model"), f"unknown unit model {u.model!r}",
                         f"use one of: {', '.join(sorted(UNIT_MODELS))}")
                continue
            params: dict[str, float] = {}
            for key, raw in (u.model_extra or {}).items():
                name, suffix_unit = split_suffix(key)
                p = model.param(key) or model.param(name)
                if p is None:
                    self.add((*base, key), f"unknown parameter {key!r} for model {u.model}",
                             f"parameters of {u.model}: {', '.join(q.name for q in model.params)}")
                    continue
                if model.param(key) is not None:
                    suffix_unit = None
                if suffix_unit is not None:
                    if UNITS[suffix_unit].si != p.unit:
                        self.add((*base, key), f"suffix unit {suffix_unit} does not measure {p.name} [{p.unit}]",
                                 f"use one of: {', '.join(compatible_units(p.unit))}")
                        continue
                    if isinstance(raw, bool) or not isinstance(raw, int | float):
                        self.add((*base, key), f"expected a number in {suffix_unit}, got {raw!r}", "")
                        continue
                    value: float | None = to_si(float(raw), suffix_unit)
                else:
                    value = self.quantity((*base, key), raw, p.unit)
                if value is None:
                    continue
                if p.name in params:
                    self.add((*base, key), f"parameter {p.name} given twice", "keep one of the two keys")
                if not math.isfinite(value) or not (p.lo <= value <= p.hi):
                    self.add((*base, key), f"{p.name} = {value:g} {p.unit} is physically impossible or out of range "
                             f"(allowed {p.lo:g} … {p.hi:g} {p.unit})", "check the value and its unit")
                    continue
                if p.integer and value != int(value):
                    self.add((*base, key), f"{p.name} must be a whole number", "")
                params[p.name] = value
            for p in model.params:
                if p.name not in params:
                    if p.default is None:
                        self.add(base, f"required parameter {p.name!r} [{p.unit}] of {u.model} is missing",
                                 f"add '{p.name}: \"<value> <unit>\"' to unit {u.id!r}")
                    else:
                        params[p.name] = p.default
            for inp, pid in u.profiles.items():
                if inp not in model.profile_inputs:
                    self.add((*base, "profiles", inp), f"{u.model} has no profile input {inp!r}",
                             f"profile inputs of {u.model}: {', '.join(model.profile_inputs) or 'none'}")
                elif pid not in profile_ids:
                    self.add((*base, "profiles", inp), f"unknown profile {pid!r}", "define it under profiles:")
            for inp in model.profile_inputs:
                if inp not in u.profiles:
                    self.add((*base, "profiles"), f"{u.model} needs a profile for {inp!r}",
                             f"add 'profiles: {{{inp}: <profile id>}}' to unit {u.id!r}")
            self._physical(base, u.model, params)
            out[u.id] = params
        return out

    def _physical(self, base: Path_, model: str, p: dict[str, float]) -> None:
        def lt(a: str, b: str) -> None:
            if a in p and b in p and not p[a] < p[b]:
                self.add(base, f"{a} ({p[a]:g}) must be below {b} ({p[b]:g})", "swap or correct the two values")

        lt("min_supply_temperature", "max_supply_temperature")
        lt("return_temperature", "min_supply_temperature")
        lt("min_temperature", "max_temperature")
        lt("min_pressure", "max_pressure")
        if model == "heat_pump":
            lt("source_temperature", "condenser_temperature")

    def _port(self, path: Path_, ref: str, want: PortDirection) -> tuple[str, str] | None:
        unit_id, port_name = ref.split(".")
        unit = next((u for u in self.cfg.units if u.id == unit_id), None)
        if unit is None:
            self.add(path, f"connection to a unit that does not exist: {unit_id!r}",
                     f"use one of: {', '.join(u.id for u in self.cfg.units)}")
            return None
        model = UNIT_MODELS.get(unit.model)
        if model is None:
            return None
        port = model.port(port_name)
        if port is None:
            self.add(path, f"unit {unit_id!r} ({unit.model}) has no port {port_name!r}",
                     f"ports: {', '.join(f'{p.name} ({p.direction}, {p.medium})' for p in model.ports)}")
            return None
        if port.direction != want:
            self.add(path, f"port {ref} is an {port.direction}-port; a connection goes from an out-port to an in-port",
                     "swap 'from' and 'to', or pick another port")
            return None
        return unit.owner, str(port.medium)

    def _connections(self) -> None:
        compatible = {("waste_heat", "hot_water"), ("hot_water", "waste_heat")}
        for i, c in enumerate(self.cfg.connections):
            a = self._port(("connections", i, "from"), c.source, PortDirection.OUT)
            b = self._port(("connections", i, "to"), c.target, PortDirection.IN)
            if a and b and a[1] != b[1] and (a[1], b[1]) not in compatible:
                self.add(("connections", i), f"medium mismatch: {c.source} carries {a[1]}, {c.target} takes {b[1]}",
                         "connect ports of the same medium")

    def _exchanges(self) -> None:
        conns = {c.id: c for c in self.cfg.connections}
        units = {u.id: u for u in self.cfg.units}
        contracts = {c.id for c in self.cfg.contracts}
        used: Counter[str] = Counter()
        for i, e in enumerate(self.cfg.exchanges):
            c = conns.get(e.connection)
            if c is None:
                self.add(("exchanges", i, "connection"), f"unknown connection {e.connection!r}", "use a connection id")
            else:
                su, tu = units.get(c.source.split(".")[0]), units.get(c.target.split(".")[0])
                if su and tu and su.owner == tu.owner:
                    self.add(("exchanges", i, "connection"),
                             f"connection {c.id!r} stays inside party {su.owner!r}, so it is not an exchange and "
                             f"contract {e.contract!r} cannot govern it",
                             "an exchange is a connection between units of two different parties")
            if e.contract not in contracts:
                self.add(("exchanges", i, "contract"), f"unknown contract {e.contract!r}", "define it under contracts:")
            used[e.contract] += 1
        for i, k in enumerate(self.cfg.contracts):
            if used[k.id] == 0:
                self.add(("contracts", i, "id"), f"contract {k.id!r} governs no exchange",
                         "reference it from an exchange (exchanges[].contract) or remove it")

    def _tags(self, parties: set[str]) -> dict[str, TagSpec]:
        out: dict[str, TagSpec] = {}
        units = {u.id: u for u in self.cfg.units}
        for i, t in enumerate(self.cfg.tags):
            base: Path_ = ("tags", i)
            ok = True
            if t.owner not in parties:
                self.add((*base, "owner"), f"unknown party {t.owner!r}", f"use one of: {', '.join(sorted(parties))}")
                ok = False
            unit = units.get(t.unit)
            if unit is None:
                self.add((*base, "unit"), f"unknown unit {t.unit!r}", "use a unit id from units:")
                continue
            model = UNIT_MODELS.get(unit.model)
            if model is None:
                continue
            q = model.quantity(t.quantity)
            if q is None:
                self.add((*base, "quantity"), f"unit {t.unit!r} ({unit.model}) has no quantity {t.quantity!r}",
                         f"quantities: {', '.join(x.name for x in model.quantities)}")
                continue
            if t.eng_unit not in UNITS or UNITS[t.eng_unit].si != q.unit:
                self.add((*base, "eng_unit"), f"{t.eng_unit!r} is not a unit of {t.quantity} [{q.unit}]",
                         f"use one of: {', '.join(compatible_units(q.unit))}")
                continue
            max_age = self.quantity((*base, "max_age"), t.max_age, "s")
            if max_age is not None and max_age <= 0:
                self.add((*base, "max_age"), "max_age must be positive", "")
            bounds = rate = safe = None
            if t.bounds is not None:
                lo, hi = to_si(t.bounds[0], t.eng_unit), to_si(t.bounds[1], t.eng_unit)
                if not lo < hi:
                    self.add((*base, "bounds"), f"bounds [{t.bounds[0]}, {t.bounds[1]}] are empty or reversed",
                             "write [low, high] with low < high")
                    ok = False
                bounds = (lo, hi)
            if t.direction is schema.Direction.SETPOINT:
                if q.kind is not QuantityKind.SETPOINT:
                    self.add((*base, "quantity"), f"{t.quantity} of {unit.model} cannot be set; it is a {q.kind}",
                             "bind setpoints to a setpoint quantity: " + ", ".join(
                                 x.name for x in model.quantities if x.kind is QuantityKind.SETPOINT))
                    ok = False
                if t.bounds is None:
                    self.add((*base, "bounds"), "a setpoint needs bounds", "add 'bounds: [low, high]' in eng_unit")
                    ok = False
                if t.rate_limit is None:
                    self.add((*base, "rate_limit"), "a setpoint needs a rate limit",
                             f"add e.g. 'rate_limit: \"5 {t.eng_unit}/min\"'")
                    ok = False
                else:
                    rate = self._rate((*base, "rate_limit"), t.rate_limit, t.eng_unit)
                if t.safe_value is None:
                    self.add((*base, "safe_value"), "a setpoint needs a safe value (written on fallback and shutdown)",
                             "add 'safe_value: <value in eng_unit>' within the bounds")
                    ok = False
                else:
                    safe = to_si(t.safe_value, t.eng_unit)
                    if bounds and not bounds[0] <= safe <= bounds[1]:
                        self.add((*base, "safe_value"), "safe_value lies outside the bounds", "")
                        ok = False
            elif q.kind is QuantityKind.SETPOINT:
                self.add((*base, "direction"), f"{t.quantity} is a setpoint quantity but the tag is a measurement",
                         "use 'direction: setpoint' or measure an output/state instead")
                ok = False
            if ok and max_age is not None:
                noise = UNITS[t.eng_unit].factor * t.noise
                out[t.id] = TagSpec(t.id, t.owner, t.unit, t.quantity, q.unit, t.eng_unit, t.direction, max_age,
                                    noise, bounds, rate, safe, t.binding)
        return out

    def _rate(self, path: Path_, text: str, eng_unit: str) -> float | None:
        number_unit, _, per = text.rpartition("/")
        try:
            parts = number_unit.split()
            number = float(parts[0])
            unit = parts[1] if len(parts) > 1 else eng_unit
            per_s = UNITS[per.strip()].factor if per.strip() in UNITS and UNITS[per.strip()].si == "s" else None
        except (ValueError, IndexError):
            per_s = None
        if per_s is None or unit not in UNITS or UNITS[unit].si != UNITS[eng_unit].si or number <= 0:
            self.add(path, f"cannot read rate limit {text!r}",
                     f"write '<positive number> {eng_unit}/<s|min|h>', e.g. '5 {eng_unit}/min'")
            return None
        return number * UNITS[unit].factor / per_s

    def _profiles(self) -> dict[str, Profile]:
        out: dict[str, Profile] = {}
        for i, p in enumerate(self.cfg.profiles):
            base: Path_ = ("profiles", i)
            if p.unit not in UNITS:
                self.add((*base, "unit"), f"unknown unit {p.unit!r}", "use a unit such as 1, %, W, MW, degC, EUR/MWh")
                continue
            period = self.quantity((*base, "period"), p.period, "s") if p.period is not None else None
            times = values = None
            if p.csv is not None:
                times, values = self._csv((*base, "csv"), p.csv)
            elif p.inline is not None:
                step = self.quantity((*base, "inline", "step"), p.inline.step, "s")
                if step is not None and step > 0:
                    times = np.arange(len(p.inline.values), dtype=float) * step
                    values = np.asarray(p.inline.values, dtype=float)
                elif step is not None:
                    self.add((*base, "inline", "step"), "step must be positive", "")
            elif p.formula is not None:
                try:
                    f = compile_formula(p.formula)
                except (ValueError, SyntaxError, ZeroDivisionError) as exc:
                    self.add((*base, "formula"), f"cannot use formula: {exc}",
                             "use t [s], numbers, + - * / ** and sin cos exp log sqrt abs min max floor pi")
                    continue
                step = self.quantity((*base, "formula_step"), p.formula_step, "s")
                span = self.quantity((*base, "formula_span"), p.formula_span, "s")
                if step and span and step > 0 and span > 0:
                    times = np.arange(0.0, span + step / 2, step)
                    values = np.array([f(t) for t in times])
            if times is None or values is None:
                continue
            if not np.all(np.isfinite(values)):
                self.add(base, "the profile has values that are not finite numbers", "fix or remove those rows")
                continue
            d = UNITS[p.unit]
            out[p.id] = Profile(p.id, times, values * d.factor + d.offset, d.si, p.interpolation, period)
        return out

    def _csv(self, path: Path_, c: schema.CsvProfile) -> tuple[np.ndarray | None, np.ndarray | None]:
        file = (self.base / c.path) if not Path(c.path).is_absolute() else Path(c.path)
        if not file.exists():
            self.add((*path, "path"), f"profile CSV not found: {file}", "the path is relative to the config file")
            return None, None
        if c.time_unit not in UNITS or UNITS[c.time_unit].si != "s":
            self.add((*path, "time_unit"), f"{c.time_unit!r} is not a time unit", "use s, min, h or d")
            return None, None
        try:
            if file not in self._csv_cache:  # several profiles often share one file
                with file.open(newline="", encoding="utf-8") as fh:
                    reader = csv.DictReader(fh)
                    rows = list(reader)
                    self._csv_cache[file] = (list(reader.fieldnames or []), rows)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            self.add(path, f"cannot read {file.name}: {exc}", "")
            return None, None
        cols, rows = self._csv_cache[file]
        for col in (c.time_column, c.value_column):
            if col not in cols:
                self.add(path, f"column {col!r} is not in {file.name} (columns: {', '.join(cols)})",
                         "name an existing column")
                return None, None
        t, v = [], []
        for row_no, row in enumerate(rows, start=2):
            try:
                t.append(float(row[c.time_column]))
                v.append(float(row[c.value_column]))
            except (TypeError, ValueError):
                self.add(path, f"{file.name} line {row_no}: not a number "
                         f"({row.get(c.time_column)!r}, {row.get(c.value_column)!r})", "fix that row")
                return None, None
        if len(t) < 2:
            self.add(path, f"{file.name} has fewer than two rows", "a profile needs at least two points")
            return None, None
        times = np.asarray(t) * UNITS[c.time_unit].factor
        if np.any(np.diff(times) <= 0):
            bad = int(np.argmax(np.diff(times) <= 0)) + 3
            self.add(path, f"{file.name} line {bad}: times must increase", "sort the file by time, no duplicates")
            return None, None
        return times - times[0], np.asarray(v) * c.scale + c.offset

    def _controller(self, profile_ids: set[str]) -> None:
        c = self.cfg.controller
        for key in ("period", "horizon", "step", "cycle"):
            v = self.quantity(("controller", key), getattr(c, key), "s")
            if v is not None and v <= 0:
                self.add(("controller", key), f"{key} must be positive", "")
        for name, value in c.prices.items():
            if isinstance(value, str) and value in profile_ids:
                continue
            try:
                parse_quantity(value, "EUR/J")
            except UnitError:
                self.add(("controller", "prices", name), f"price {value!r} is neither a profile id nor 'X EUR/MWh'",
                         "name a profile or write e.g. '30 EUR/MWh'")
        self.quantity(("controller", "co2_price"), c.co2_price, "EUR/kg")
        self.quantity(("controller", "unmet_demand_penalty"), c.unmet_demand_penalty, "EUR/J")

    def _series_units(self, profiles: dict[str, Profile]) -> dict[str, tuple[str | None, str | None]]:
        """Controller series a forecast may replace → (SI unit or None if unknown yet, current profile id)."""
        out: dict[str, tuple[str | None, str | None]] = {}
        for u in self.cfg.units:
            model = UNIT_MODELS.get(u.model)
            for inp in model.profile_inputs if model else ():
                pid = u.profiles.get(inp)
                out[f"{u.id}.{inp}"] = (profiles[pid].unit if pid in profiles else None, pid)
        for name, value in self.cfg.controller.prices.items():
            pid = value if isinstance(value, str) and value in profiles else None
            out[f"price.{name}"] = ("EUR/J", pid)
        out["price.co2"] = ("EUR/kg", None)
        return out

    def _unit_of(self, path: Path_, unit: str, si: str | None) -> bool:
        if unit not in UNITS:
            self.add(path, f"unknown unit {unit!r}", "use a unit such as 1, %, MW, degC, EUR/MWh")
            return False
        if si is not None and UNITS[unit].si != si:
            self.add(path, f"{unit!r} does not measure this series [{si}]", f"use one of: {', '.join(compatible_units(si))}")
            return False
        return True

    def _positive_duration(self, path: Path_, value: Any) -> float | None:
        v = self.quantity(path, value, "s")
        if v is not None and not (v > 0 and math.isfinite(v)):
            self.add(path, "must be a positive, finite duration", "write e.g. '6 h'")
            return None
        return v

    def _forecasts(self, profiles: dict[str, Profile], profile_ids: set[str]) -> dict[str, ForecastSpec]:
        """``forecasts:`` entries: known series, compatible units, existing profiles and model files."""
        series_units = self._series_units(profiles)
        seen: dict[str, int] = {}
        topics: dict[str, int] = {}
        out: dict[str, ForecastSpec] = {}
        for i, f in enumerate(self.cfg.forecasts):
            base: Path_ = ("forecasts", i)
            ok = True
            if f.series in seen:
                self.add((*base, "series"), f"series {f.series!r} is already fed by forecasts[{seen[f.series]}]",
                         "one entry per series; list its sources (mqtt, csv, model) in that entry")
                ok = False
            seen.setdefault(f.series, i)
            if f.series not in series_units:
                known = ", ".join(sorted(series_units)) or "none"
                self.add((*base, "series"), f"unknown series {f.series!r}",
                         f"use '<unit id>.<profile input>' or 'price.<name from controller.prices>'; known: {known}")
                continue
            si, own_profile = series_units[f.series]
            if f.profile is not None:
                if f.profile not in profile_ids:
                    self.add((*base, "profile"), f"unknown profile {f.profile!r}", "define it under profiles:")
                    ok = False
                elif f.profile in profiles:
                    p_si = profiles[f.profile].unit
                    if si is not None and p_si != si:
                        self.add((*base, "profile"), f"profile {f.profile!r} is in {p_si}, the series in {si}",
                                 "name a profile of the same quantity")
                        ok = False
                    si = si or p_si
            elif si is None and not f.series.startswith("price."):
                self.add((*base, "profile"), f"series {f.series!r} has no profile to fall back on",
                         "add 'profile: <profile id>' (the last resort when every forecast is missing or expired)")
                continue
            unit_ok = self._unit_of((*base, "unit"), f.unit, si)
            ok = ok and unit_ok
            if si is None and f.unit in UNITS:
                si = UNITS[f.unit].si
            bounds = None
            if f.bounds is not None and unit_ok and si is not None:
                lo, hi = (self._bound((*base, "bounds", k), b, f.unit, si) for k, b in enumerate(f.bounds))
                if lo is None or hi is None:
                    ok = False
                elif not lo < hi:
                    self.add((*base, "bounds"), "bounds are empty or reversed", "write [low, high] with low < high")
                    ok = False
                else:
                    bounds = (lo, hi)
            max_gap = self._positive_duration((*base, "max_gap"), f.max_gap)
            mqtt = csv_src = model = None
            if f.mqtt is not None:
                m = f.mqtt
                mb: Path_ = (*base, "mqtt")
                if m.topic in topics:
                    self.add((*mb, "topic"), f"topic {m.topic!r} already feeds forecasts[{topics[m.topic]}]",
                             "publish each series on its own topic")
                    ok = False
                topics.setdefault(m.topic, i)
                if any(c in m.topic for c in "+#"):
                    self.add((*mb, "topic"), f"topic {m.topic!r} has a wildcard", "name the one topic the forecast is published on")
                    ok = False
                unit = m.unit or f.unit
                age = self._positive_duration((*mb, "max_age"), m.max_age)
                step = self._positive_duration((*mb, "step"), m.step)
                if self._unit_of((*mb, "unit"), unit, si) and age is not None and step is not None:
                    mqtt = MqttForecastSpec(m.topic, m.encoding, unit, age, m.points, step, m.metric)
                else:
                    ok = False
            if f.csv is not None:
                c = f.csv
                cb: Path_ = (*base, "csv")
                unit = c.unit or f.unit
                age = self._positive_duration((*cb, "max_age"), c.max_age)
                if self._unit_of((*cb, "unit"), unit, si) and age is not None:
                    csv_src = CsvForecastSpec(self._resolve(c.path), unit, age)
                else:
                    ok = False
            if f.model is not None:
                model = self._model_source((*base, "model"), f.model, profiles, profile_ids)
                ok = ok and model is not None
            if ok and max_gap is not None and si is not None:
                out[f.id] = ForecastSpec(f.id, f.series, si, bounds, max_gap, f.profile or own_profile,
                                         mqtt, csv_src, model)
        return out

    def _resolve(self, text: str) -> Path:
        p = Path(text)
        return p if p.is_absolute() else self.base / p

    def _bound(self, path: Path_, value: Any, unit: str, si: str) -> float | None:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return to_si(float(value), unit)
        return self.quantity(path, value, si)

    def _model_source(self, path: Path_, m: schema.ForecastModelSource, profiles: dict[str, Profile],
                      profile_ids: set[str]) -> ModelForecastSpec | None:
        from symtwin.forecasting.model import Forecaster, ForecastModelError

        ok = True
        age = self._positive_duration((*path, "max_age"), m.max_age)
        if m.temperature is not None:
            if m.temperature not in profile_ids:
                self.add((*path, "temperature"), f"unknown profile {m.temperature!r}", "define it under profiles:")
                ok = False
            elif m.temperature in profiles and profiles[m.temperature].unit != "K":
                self.add((*path, "temperature"), f"profile {m.temperature!r} is not a temperature",
                         "name the outdoor temperature profile (unit degC or K)")
                ok = False
        file = self._resolve(m.file)
        try:
            Forecaster.from_json(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            self.add((*path, "file"), f"model file not found: {file}",
                     "train one with `symtwin forecast train` (the path is relative to the config file)")
            ok = False
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError, IndexError,
                ForecastModelError) as exc:
            self.add((*path, "file"), f"cannot read model file {file.name}: {exc}",
                     "write it again with `symtwin forecast train`")
            ok = False
        if not ok or age is None:
            return None
        return ModelForecastSpec(file, age, m.temperature)

    def _sharing(self) -> None:
        from symtwin.governance.from_site import policy_issues

        for ri, r in enumerate(self.cfg.sharing.rules):
            if isinstance(r.resolution, schema.Aggregated):
                path: Path_ = ("sharing", "rules", ri, "resolution", "aggregated")
                v = self.quantity(path, r.resolution.aggregated, "s")
                if v is not None and v <= 0:
                    self.add(path, "the interval must be positive", "")
        if any(i.path[:2] == ("sharing", "rules") for i in self.issues):
            return
        for issue in policy_issues(self.cfg):
            self.add(issue.path, issue.message, "each tag reaches each party at one resolution; owners see theirs raw")

    def _web(self, parties: set[str]) -> None:
        self._unique_path(("web", "users"), [u.name for u in self.cfg.web.users], key="name")
        ttl = self.quantity(("web", "session_ttl"), self.cfg.web.session_ttl, "s")
        if ttl is not None and ttl <= 0:
            self.add(("web", "session_ttl"), "session_ttl must be positive", "")
        for i, u in enumerate(self.cfg.web.users):
            if u.party not in parties:
                self.add(("web", "users", i, "party"), f"unknown party {u.party!r}",
                         f"use one of: {', '.join(sorted(parties))}")

    def _unique_path(self, path: Path_, ids: list[str], key: str = "id") -> None:
        seen: set[str] = set()
        for i, ident in enumerate(ids):
            if ident in seen:
                self.add((*path, i, key), f"duplicate {key} {ident!r}", "")
            seen.add(ident)
