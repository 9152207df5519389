"""What the service shows to the outside: an immutable snapshot swapped once per update, and the commands
the outside may send. The live view, /metrics and reports read snapshots; nothing they do can stall the
control cycle (they never take a lock the cycle waits on)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class TagStatus(enum.StrEnum):
    OK = "ok"
    STALE = "stale"
    FROZEN = "frozen"
    BAD = "bad"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class TagView:
    """One tag as the service sees it now. Values in SI; ``eng_unit`` and ``value_eng`` for display."""

    id: str
    owner: str
    unit: str
    quantity: str
    direction: str  # "measurement" | "setpoint"
    si_unit: str
    eng_unit: str
    value: float | None  # latest measured (or last written, for setpoints) [SI]
    value_eng: float | None
    timestamp: float | None  # [s since epoch]
    status: TagStatus
    estimate: float | None = None  # twin estimate of the same quantity [SI]
    estimate_std: float | None = None  # its standard deviation [SI]
    override: float | None = None  # operator's manual value, if any [SI]


@dataclass(frozen=True, slots=True)
class Flow:
    """A live exchange for the Sankey: supplier → receiver."""

    exchange: str
    supplier: str
    receiver: str
    source_unit: str
    target_unit: str
    medium: str  # steam | hot_water | waste_heat
    heat_w: float
    mass_kg_s: float | None


@dataclass(frozen=True, slots=True)
class Alarm:
    key: str  # stable id, e.g. "stale:powerco.chp.load"
    severity: str  # "warning" | "alarm"
    message: str
    since: float
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PlanView:
    """The controller's plan for one setpoint tag versus what happened."""

    tag: str
    times: tuple[float, ...]
    planned: tuple[float, ...]  # [SI]
    actual_times: tuple[float, ...] = ()
    actual: tuple[float, ...] = ()


@dataclass(frozen=True)
class Snapshot:
    time: float
    mode: str  # off | shadow | auto
    tags: Mapping[str, TagView]
    flows: tuple[Flow, ...] = ()
    unit_states: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # unmeasured, e.g. tank layers
    plans: Mapping[str, PlanView] = field(default_factory=dict)
    solve_status: str = "none"
    solve_time_s: float | None = None
    solve_at: float | None = None
    fallback: str = "none"  # none | last_plan | safe
    alarms: tuple[Alarm, ...] = ()
    dead_letters: int = 0
    cycle: int = 0
    wall_time: float | None = None  # wall clock [s since epoch] when published (live view's push-delay figure)


class ServiceControl(Protocol):
    """Commands from operators (the live view) to the service; each is logged with user and reason."""

    def set_mode(self, mode: str, user: str, reason: str = "") -> None: ...

    def override(self, tag: str, value_si: float, user: str, reason: str = "") -> None: ...

    def release(self, tag: str, user: str, reason: str = "") -> None: ...


class SnapshotSource(Protocol):
    def snapshot(self) -> Snapshot: ...
