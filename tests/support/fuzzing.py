"""Fuzz harnesses shared by the hypothesis tests (tests/reliability/test_rel_fuzz.py) and the atheris
targets (tests/fuzz/): one function per input surface that feeds one input and returns what happened.

A *crash* is any exception escaping the surface; everything else is an outcome to count:

- MQTT (JSON and Sparkplug B topics through :class:`adapters.mqtt.router.MqttRouter`): "ok" (samples only)
  or "bad" (at least one refusal). The invariant: every refusal is counted under its reason and comes
  back as a dead letter; every sample is finite and inside its binding's bounds; a message never
  vanishes (it yields samples, dead letters, or — Sparkplug only — a control message handled silently).
- Site config (:func:`symtwin.config.load_site`): "ok" or "refused" with a :class:`ConfigError` naming
  at least one issue.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from adapters.mqtt.bench_helpers import BENCH_EDGE, BENCH_GROUP, sparkplug_bindings
from adapters.mqtt.jsonpayload import JsonField
from adapters.mqtt.router import MqttRouter
from adapters.tagmap import TagBinding
from symtwin.config import ConfigError, load_site

JSON_TOPIC = "plant/json"
SPB_PREFIX = f"spBv1.0/{BENCH_GROUP}"
REFUSAL_KEYS_IGNORED = {"messages", "samples", "duplicates", "rebirth_requests", "sparkplug_seq_gap"}


class InvariantBroken(AssertionError):
    """A surface returned without raising but broke its contract (e.g. a refusal without dead letter)."""


def json_router() -> MqttRouter:
    """Three JSON tags (one bounded, one scaled degC → K) and the bench Sparkplug node; no dedupe, so every
    message is judged on its own."""
    fields = [
        JsonField.of(TagBinding("t_plain"), "/v/0", "/ts"),
        JsonField.of(TagBinding("t_bounded", lower=0.0, upper=100.0), "/v/1", "/ts"),
        JsonField.of(TagBinding("t_celsius", offset=273.15, lower=0.0), "/a/b", "/ts"),
    ]
    return MqttRouter({JSON_TOPIC: fields}, sparkplug_bindings(3), dedupe_window=0)


@dataclass
class Tally:
    inputs: int = 0
    ok: int = 0
    bad: int = 0
    dead_letters: int = 0
    crashes: int = 0
    silent: int = 0  # Sparkplug control messages (NDEATH, commands, STATE) with nothing to report
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)

    def as_dict(self) -> dict[str, object]:
        return {
            "inputs": self.inputs,
            "ok": self.ok,
            "bad": self.bad,
            "dead_lettered": self.dead_letters,
            "crashes": self.crashes,
            "silent_control_messages": self.silent,
            "reasons": dict(self.reasons.most_common()),
        }


def feed_mqtt(router: MqttRouter, tally: Tally, topic: str, payload: bytes) -> None:
    """One message through the router; raises on a crash (counted first) or a broken invariant."""
    tally.inputs += 1
    before = router.snapshot()
    try:
        routed = router.handle(topic, payload, 1_700_000_000.0)
    except Exception:
        tally.crashes += 1
        raise
    after = router.snapshot()
    refused = sum(after.get(k, 0) - before.get(k, 0) for k in after if k not in REFUSAL_KEYS_IGNORED)
    if refused != len(routed.dead_letters):
        raise InvariantBroken(f"{refused} refusals counted but {len(routed.dead_letters)} dead letters")
    for s in routed.samples:
        if not math.isfinite(s.value) or not math.isfinite(s.timestamp):
            raise InvariantBroken(f"non-finite sample {s}")
    if routed.dead_letters:
        tally.bad += 1
        tally.dead_letters += len(routed.dead_letters)
        for dl in routed.dead_letters:
            tally.reasons[dl.reason.split(":")[0]] += 1
    elif routed.samples:
        tally.ok += 1
    elif topic.startswith(SPB_PREFIX):
        tally.silent += 1
    else:
        raise InvariantBroken(f"message on {topic} vanished: no sample, no dead letter")


def feed_config(text: bytes, tally: Tally, workdir: Path | None = None) -> None:
    """One site-config document through ``load_site``; raises on a crash (counted first)."""
    tally.inputs += 1
    with tempfile.TemporaryDirectory(dir=workdir) as d:
        path = Path(d) / "site.yaml"
        path.write_bytes(text)
        try:
            load_site(path)
        except ConfigError as exc:
            if not exc.issues:
                raise InvariantBroken("ConfigError without an issue") from exc
            tally.bad += 1
            tally.dead_letters += len(exc.issues)
            for issue in exc.issues[:3]:
                tally.reasons[type(issue).__name__] += 1
            return
        except Exception:
            tally.crashes += 1
            raise
    tally.ok += 1


def config_seed() -> bytes:
    """The demo site config with its CSV profiles replaced by formulas (reading the CSV takes ~0.3 s, which
    would leave a fuzzer a few inputs per second)."""
    text = (Path(__file__).resolve().parents[2] / "configs" / "demo.yaml").read_text(encoding="utf-8")
    return re.sub(r"csv: \{[^}]*\}", 'formula: "0.5 + 0.1*sin(2*pi*t/86400)"', text).encode()


def spb_topic(kind: str) -> str:
    return f"{SPB_PREFIX}/{kind}/{BENCH_EDGE}"


SPB_KINDS = ("NBIRTH", "NDATA", "DBIRTH", "DDATA", "NDEATH", "STATE", "NCMD")


def spb_input(data: bytes) -> tuple[str, bytes]:
    """An atheris input for the Sparkplug target: first byte picks the message type, the rest is the payload."""
    if not data:
        return spb_topic("NDATA"), b""
    return spb_topic(SPB_KINDS[data[0] % len(SPB_KINDS)]), data[1:]


def seed_corpus(target: str) -> list[bytes]:
    """Valid inputs the coverage-guided fuzzer starts from (``target``: mqtt_json, sparkplug or config)."""
    from adapters.mqtt.bench_helpers import json_messages, sparkplug_messages

    if target == "mqtt_json":
        return [
            b'{"ts": 1700000000.5, "v": [1.0, 50.0], "a": {"b": 20.0}}',
            *(p for _, p in json_messages(JSON_TOPIC, 2, 2, 1.7e9)),
        ]
    if target == "sparkplug":
        msgs = list(sparkplug_messages(3, 3, 1.7e9))
        return [bytes([SPB_KINDS.index(t.split("/")[2])]) + p for t, p in msgs]
    if target == "config":
        return [config_seed()]
    raise ValueError(f"no seed corpus for {target!r}")


def run_atheris(target: str, one: Callable[[bytes, Tally], None]) -> None:
    """Body of a ``tests/fuzz/fuzz_<target>.py`` script: fuzz ``one`` under atheris, writing the tally to
    ``$FUZZ_TALLY`` every 50 inputs and on a crash (libFuzzer ends the process with ``exit``)."""
    import atheris

    tally = Tally()
    out = os.environ.get("FUZZ_TALLY")

    def save() -> None:
        if out:
            Path(out).write_text(json.dumps(tally.as_dict()))

    def test_one(data: bytes) -> None:
        try:
            one(data, tally)
        except BaseException:
            save()
            raise
        if tally.inputs % 50 == 0:
            save()

    atheris.Setup(sys.argv, test_one)
    atheris.Fuzz()
