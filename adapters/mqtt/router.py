"""Topic routing: one MQTT message → samples, dead letters and commands to publish. No I/O, no paho.

The MQTT client calls :meth:`MqttRouter.handle` from its network thread; everything it needs (bindings,
Sparkplug host state, de-duplication window, counters) is here so it can be tested and fuzzed alone.
"""

from __future__ import annotations

import collections
import enum
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from adapters.base import DeadLetter, Sample
from adapters.mqtt.jsonpayload import JsonDecoder, JsonField
from adapters.mqtt.sparkplug import NAMESPACE, MetricKey, SparkplugHost
from adapters.tagmap import TagBinding

SOURCE_PREFIX = "mqtt:"


class RouteRefusal(enum.StrEnum):
    UNKNOWN_TOPIC = "unknown_topic"
    OVERSIZED = "oversized_payload"


@dataclass(slots=True)
class Routed:
    samples: list[Sample] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    commands: list[tuple[str, bytes]] = field(default_factory=list)


def filter_covers(topic_filter: str, topic: str) -> bool:
    """True if every topic matched by ``topic`` (a topic or filter) is matched by ``topic_filter``."""
    f_parts, t_parts = topic_filter.split("/"), topic.split("/")
    for i, f in enumerate(f_parts):
        if f == "#":
            return True
        if i >= len(t_parts):
            return False
        t = t_parts[i]
        if f == "+":
            if t == "#":
                return False
            continue
        if f != t:
            return False
    return len(f_parts) == len(t_parts)


class _Dedupe:
    """Drops a sample whose (tag, timestamp) was seen recently for that tag.

    QoS 1 is at-least-once: a broker or client restart redelivers messages; this keeps them out of the
    historian without assuming timestamps arrive in order. "Recently" is by source time: every timestamp
    within ``window_s`` [s] of the newest one seen for the tag (a broker killed with SIGKILL replays up to
    its last autosave, which at high rates is far more than a fixed count of messages), capped at
    ``window`` entries per tag so memory stays bounded whatever the rate.
    """

    def __init__(self, window: int, window_s: float = 300.0) -> None:
        self._window = window
        self._window_s = window_s
        # Per tag, recent timestamps in arrival order (a dict keeps insertion order: oldest first).
        self._seen: dict[str, dict[float, None]] = {}
        self._newest: dict[str, float] = {}

    def fresh(self, samples: list[Sample]) -> tuple[list[Sample], int]:
        kept: list[Sample] = []
        window, window_s = self._window, self._window_s
        for s in samples:
            seen = self._seen.get(s.tag)
            if seen is None:
                seen = self._seen[s.tag] = {}
            ts = s.timestamp
            if ts in seen:
                continue
            seen[ts] = None
            newest = max(self._newest.get(s.tag, ts), ts)
            self._newest[s.tag] = newest
            while len(seen) > window or next(iter(seen)) < newest - window_s:
                del seen[next(iter(seen))]
            kept.append(s)
        return kept, len(samples) - len(kept)


class MqttRouter:
    """Bindings for one MQTT connection.

    json_topics: exact topic → the fields that message carries (one message may hold many tags).
    sparkplug: Sparkplug metric → binding; the router subscribes to ``spBv1.0/<group>/#`` for each group.
    extra_subscriptions: further topic filters (messages on them that no binding claims are counted as
        ``unknown_topic`` and dead-lettered, which is how a misconfigured publisher shows up).
    max_payload_bytes: larger payloads are dead-lettered undecoded.
    dedupe_window: most timestamps remembered per tag for de-duplication (0 disables); within that cap,
        every timestamp of the last 300 s of source time is remembered.
    dead_letter_payload_bytes: how much of a refused payload the dead letter keeps.
    """

    def __init__(
        self,
        json_topics: Mapping[str, Sequence[JsonField]] | None = None,
        sparkplug: Mapping[MetricKey, TagBinding] | None = None,
        *,
        extra_subscriptions: Sequence[str] = (),
        max_payload_bytes: int = 262_144,
        dedupe_window: int = 65536,
        dead_letter_payload_bytes: int = 4096,
        rebirth_retry_s: float = 5.0,
    ) -> None:
        self._json = {topic: JsonDecoder(fields) for topic, fields in (json_topics or {}).items()}
        for topic in self._json:
            if "+" in topic or "#" in topic:
                raise ValueError(f"JSON binding topic {topic!r} must be an exact topic, not a filter")
        self._sparkplug = SparkplugHost(sparkplug or {}, rebirth_retry_s)
        self._extra = tuple(extra_subscriptions)
        self._max_payload = max_payload_bytes
        self._dedupe = _Dedupe(dedupe_window) if dedupe_window > 0 else None
        self._dl_bytes = dead_letter_payload_bytes
        self.counts: collections.Counter[str] = collections.Counter()
        # handle() runs on paho's thread; snapshot() may be called from any other.
        self._lock = threading.Lock()

    @property
    def sparkplug(self) -> SparkplugHost:
        return self._sparkplug

    def subscriptions(self) -> list[str]:
        """Topic filters to subscribe, without any covered by another (overlapping subscriptions make
        the broker deliver a message once per match)."""
        subs = sorted(self._json)
        subs += [f"{NAMESPACE}/{g}/#" for g in sorted(self._sparkplug.groups)]
        subs += [s for s in self._extra if s not in subs]
        return [s for s in subs if not any(f != s and filter_covers(f, s) for f in subs)]

    def _dead(
        self, out: Routed, topic: str, payload: bytes, received_at: float, code: str, detail: str
    ) -> None:
        code = str(code)
        self.counts[code] += 1
        reason = f"{code}: {detail}" if detail else code
        out.dead_letters.append(
            DeadLetter(SOURCE_PREFIX + topic, received_at, reason, payload[: self._dl_bytes])
        )

    def snapshot(self) -> dict[str, int]:
        """A consistent copy of the counters, safe from any thread."""
        with self._lock:
            return dict(self.counts)

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def handle(self, topic: str, payload: bytes, received_at: float) -> Routed:
        """Route one message; never raises on bad input."""
        with self._lock:
            return self._handle(topic, payload, received_at)

    def _handle(self, topic: str, payload: bytes, received_at: float) -> Routed:
        out = Routed()
        self.counts["messages"] += 1
        if len(payload) > self._max_payload:
            self._dead(out, topic, payload, received_at, RouteRefusal.OVERSIZED, f"{len(payload)} bytes")
            return out
        decoder = self._json.get(topic)
        if decoder is not None:
            decoded = decoder.decode(payload, received_at)
            samples, refusals = decoded.samples, decoded.refusals
        elif topic.startswith(NAMESPACE + "/"):
            result = self._sparkplug.handle(topic, payload, received_at)
            samples, refusals = result.samples, result.refusals
            out.commands = result.commands
            if result.seq_gap:
                self.counts["sparkplug_seq_gap"] += 1
            self.counts["rebirth_requests"] += len(result.commands)
        else:
            self._dead(out, topic, payload, received_at, RouteRefusal.UNKNOWN_TOPIC, "")
            return out
        for code, detail in refusals:
            self._dead(out, topic, payload, received_at, code, detail)
        if self._dedupe is not None and samples:
            samples, dropped = self._dedupe.fresh(samples)
            self.counts["duplicates"] += dropped
        self.counts["samples"] += len(samples)
        out.samples = samples
        return out
