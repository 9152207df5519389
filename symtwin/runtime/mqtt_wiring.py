"""Site config → the MQTT adapter's plain parameters, and a writer that sends each setpoint to its adapter.

Every tag with ``binding.mqtt`` is served over MQTT:

- measurement, ``format: json``: a :class:`JsonField` on the binding's topic (several tags may share one
  message), value at ``pointer``, timestamp at ``timestamp_pointer`` (epoch in ``timestamp_unit``, s or ms,
  or ISO 8601 text) or the receive time when it is null;
- measurement, ``format: sparkplug``: the metric ``pointer`` of the edge node (or device) in ``topic``
  (``spBv1.0/<group>/<type>/<edge>[/<device>]``);
- setpoint: a QoS 1 JSON command on ``topic`` (``{"value": <eng unit>, "ts": <s>, "seq": <n>}``).

Engineering units convert to SI with ``symtwin.units`` (``si = raw·factor + offset``); a tag's bounds
become the plausible range (measurements outside are dead-lettered, setpoints outside are not sent).
The broker password is resolved with ``symtwin.secrets.resolve`` ({env} or {credential}).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from adapters.base import DeadLetter, SetpointWriter, Sink
from adapters.mqtt import (
    JsonField,
    MetricKey,
    MqttAdapter,
    MqttConfig,
    MqttRouter,
    SetpointBinding,
    TimestampUnit,
    metric_key,
)
from adapters.tagmap import TagBinding
from symtwin.config import LoadedSite, TagSpec
from symtwin.config.schema import Direction
from symtwin.secrets import resolve
from symtwin.units import UNITS, parse_duration

log = logging.getLogger(__name__)

__all__ = [
    "MqttWiring",
    "MqttWiringError",
    "RoutingWriter",
    "mqtt_config",
    "mqtt_tags",
    "mqtt_wiring",
    "opcua_tag_ids",
]


class MqttWiringError(ValueError):
    """A tag's MQTT binding cannot be served (bad topic or pointer, no ``adapters.mqtt`` section)."""


def mqtt_tags(site: LoadedSite) -> list[TagSpec]:
    """The site's MQTT-bound tags, in config order."""
    return [t for t in site.tags.values() if t.binding.mqtt is not None]


def opcua_tag_ids(site: LoadedSite, heartbeat_tag: str | None = None) -> frozenset[str]:
    """Tags the OPC UA adapter writes: OPC UA-bound setpoints, plus the heartbeat (an OPC UA node)."""
    ids = {
        t.id for t in site.tags.values() if t.binding.opcua is not None and t.direction is Direction.SETPOINT
    }
    if heartbeat_tag is not None and site.config.controller.heartbeat is not None:
        ids.add(heartbeat_tag)
    return frozenset(ids)


def _binding(t: TagSpec) -> TagBinding:
    u = UNITS[t.eng_unit]  # the loader checked the unit against the quantity
    lo, hi = t.bounds_si if t.bounds_si is not None else (-math.inf, math.inf)
    return TagBinding(t.id, factor=u.factor, offset=u.offset, lower=lo, upper=hi)


def mqtt_config(
    site: LoadedSite,
    *,
    credentials_dir: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    client_id: str | None = None,
) -> MqttConfig:
    """The connection parameters from ``adapters.mqtt``; ``host``/``port``/``client_id`` override it
    (simulation on loopback, tests). TLS file paths are relative to the config file."""
    cfg = site.config.adapters.mqtt
    if cfg is None:
        raise MqttWiringError(
            f"{site.path}: tags are bound to MQTT but the config has no adapters.mqtt section "
            "(add host, port, client_id)"
        )
    base = site.path.parent
    tls = cfg.tls
    return MqttConfig(
        host=host or cfg.host,
        port=port or cfg.port,
        client_id=client_id or cfg.client_id,
        username=cfg.username,
        password=resolve(cfg.password, "MQTT password", credentials_dir),
        tls_ca=base / tls.ca if tls is not None else None,
        tls_cert=base / tls.cert if tls is not None and tls.cert else None,
        tls_key=base / tls.key if tls is not None and tls.key else None,
        keepalive_s=max(1, round(parse_duration(cfg.keepalive))),
    )


@dataclass(frozen=True)
class MqttWiring:
    """Everything the MQTT adapter needs for one site: build it with :func:`mqtt_wiring`."""

    config: MqttConfig
    json_topics: Mapping[str, tuple[JsonField, ...]]
    sparkplug: Mapping[MetricKey, TagBinding]
    setpoints: Mapping[str, SetpointBinding]
    measurement_tags: frozenset[str] = field(default_factory=frozenset)

    def router(self) -> MqttRouter:
        return MqttRouter(
            self.json_topics,
            self.sparkplug,
            max_payload_bytes=self.config.max_payload_bytes,
            dedupe_window=self.config.dedupe_window,
        )

    def adapter(
        self,
        sink: Sink,
        *,
        dead_letter: Callable[[DeadLetter], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> MqttAdapter:
        """The adapter delivering to ``sink`` (the service) and writing this site's MQTT setpoints."""
        return MqttAdapter(
            self.config, self.router(), sink, dead_letter=dead_letter, setpoints=self.setpoints, clock=clock
        )

    @property
    def setpoint_tags(self) -> frozenset[str]:
        return frozenset(self.setpoints)


def mqtt_wiring(
    site: LoadedSite,
    *,
    credentials_dir: str | Path | None = None,
    host: str | None = None,
    port: int | None = None,
    client_id: str | None = None,
) -> MqttWiring | None:
    """The MQTT adapter's parameters for every MQTT-bound tag; None when no tag is bound to MQTT."""
    tags = mqtt_tags(site)
    if not tags:
        return None
    json_topics: dict[str, list[JsonField]] = {}
    sparkplug: dict[MetricKey, TagBinding] = {}
    setpoints: dict[str, SetpointBinding] = {}
    measurements: set[str] = set()
    for t in tags:
        m = t.binding.mqtt
        assert m is not None
        b = _binding(t)
        where = f"{site.path}: tag {t.id} binding.mqtt"
        try:
            if t.direction is Direction.SETPOINT:
                setpoints[t.id] = SetpointBinding(m.topic, b)
                continue
            measurements.add(t.id)
            if m.format == "sparkplug":
                key = metric_key(m.topic, m.pointer)
                if key in sparkplug:
                    raise ValueError(
                        f"metric {m.pointer!r} of {m.topic} is already bound to {sparkplug[key].tag}"
                    )
                sparkplug[key] = b
            else:
                field_ = JsonField.of(b, m.pointer, m.timestamp_pointer, TimestampUnit(m.timestamp_unit))
                json_topics.setdefault(m.topic, []).append(field_)
        except ValueError as exc:
            raise MqttWiringError(f"{where}: {exc}") from exc
    try:
        # The router refuses wildcard JSON topics; check here so the error names the file.
        MqttRouter(json_topics, sparkplug)
    except ValueError as exc:
        raise MqttWiringError(f"{site.path}: {exc}") from exc
    cfg = mqtt_config(site, credentials_dir=credentials_dir, host=host, port=port, client_id=client_id)
    return MqttWiring(
        cfg,
        {k: tuple(v) for k, v in json_topics.items()},
        sparkplug,
        setpoints,
        frozenset(measurements),
    )


class RoutingWriter:
    """One ``SetpointWriter`` in front of several: each tag goes to the writer that binds it.

    routes: (writer, tags it writes) pairs, e.g. ``[(opcua_adapter, opcua_tag_ids(site, HEARTBEAT_TAG)),
    (mqtt_adapter, wiring.setpoint_tags)]``. Writers run concurrently; a writer that raises fails only its
    own tags (logged once per outage), and a tag no writer binds is refused (False, logged once).
    """

    def __init__(self, routes: Iterable[tuple[SetpointWriter, Iterable[str]]]) -> None:
        self._routes: list[tuple[SetpointWriter, frozenset[str]]] = []
        self._owner: dict[str, int] = {}
        for i, (writer, tags) in enumerate(routes):
            tags = frozenset(tags)
            for tag in tags:
                if tag in self._owner:
                    raise ValueError(f"setpoint {tag} is bound to two writers")
                self._owner[tag] = i
            self._routes.append((writer, tags))
        self._down: set[int] = set()
        self._unbound_logged: set[str] = set()

    async def write_setpoints(self, values: dict[str, float]) -> dict[str, bool]:
        parts: dict[int, dict[str, float]] = {}
        results: dict[str, bool] = {}
        for tag, v in values.items():
            i = self._owner.get(tag)
            if i is None:
                if tag not in self._unbound_logged:
                    self._unbound_logged.add(tag)
                    log.error("setpoint %s is bound to no adapter; not written", tag)
                results[tag] = False
            else:
                parts.setdefault(i, {})[tag] = v
        order = sorted(parts)
        outcomes = await asyncio.gather(
            *(self._routes[i][0].write_setpoints(parts[i]) for i in order), return_exceptions=True
        )
        for i, out in zip(order, outcomes, strict=True):
            if isinstance(out, BaseException):
                if isinstance(out, asyncio.CancelledError):
                    raise out
                if i not in self._down:
                    self._down.add(i)
                    log.error("%s failed to write setpoints: %r", type(self._routes[i][0]).__name__, out)
                results.update(dict.fromkeys(parts[i], False))
            else:
                if i in self._down:
                    self._down.discard(i)
                    log.warning("%s writes setpoints again", type(self._routes[i][0]).__name__)
                results.update({t: bool(out.get(t, False)) for t in parts[i]})
        return results

    @property
    def tags(self) -> Sequence[str]:
        return sorted(self._owner)
