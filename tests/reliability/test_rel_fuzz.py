"""Item 9: fuzzing the MQTT JSON and Sparkplug B decoders (through the router) and the site-config loader.

Hypothesis generates inputs near the valid ones (well-formed messages with hostile values, mutated
Sparkplug payloads, mutated config lines) and far from them (random bytes). Zero crashes; every bad input
counted under its reason and dead-lettered (config: refused with a ConfigError naming its issues). The
harness and its invariants are in ``tests/support/fuzzing.py``; ``tests/fuzz/`` runs the same harness
under atheris (coverage-guided), see ``test_atheris_targets``.

CI: 600 MQTT messages, 150 configs; slow: 20,000 and 2,000.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.mqtt.sparkplug import DataType, Metric, Payload, encode_payload
from tests.support.fuzzing import (
    JSON_TOPIC,
    Tally,
    config_seed,
    feed_config,
    feed_mqtt,
    json_router,
    seed_corpus,
    spb_topic,
)
from tests.support.reliability import REPO, record

ATHERIS = REPO / "tests" / "fuzz"

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
    max_leaves=12,
)


@st.composite
def json_messages(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["near", "near", "far", "text"]))
    if kind == "far":
        return draw(st.binary(max_size=300))
    if kind == "text":
        return draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")
    doc = {
        "ts": draw(
            st.one_of(
                st.floats(1.7e9 - 60, 1.7e9 + 60), st.floats(1.0e9, 2.0e9), st.integers(0, 2**64), json_values
            )
        ),
        "v": draw(
            st.one_of(
                st.lists(st.floats(0, 100), min_size=2, max_size=2),
                st.lists(st.one_of(st.floats(-1e3, 1e3), json_values), max_size=4),
                json_values,
            )
        ),
        "a": draw(
            st.one_of(
                st.fixed_dictionaries({"b": st.one_of(st.floats(allow_nan=True), json_values)}), json_values
            )
        ),
    }
    body = json.dumps(doc, allow_nan=True)  # NaN / Infinity literals are hostile input too
    if draw(st.booleans()):
        cut = draw(st.integers(0, len(body)))
        body = body[:cut] + draw(st.text(max_size=5)) + body[cut:]
    return body.encode("utf-8", "surrogatepass")


metric_values = st.one_of(
    st.floats(allow_nan=True), st.integers(-(2**63), 2**63 - 1), st.booleans(), st.text(max_size=8), st.none()
)


@st.composite
def sparkplug_messages(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(
        st.sampled_from(["NBIRTH", "NDATA", "NDATA", "DBIRTH", "DDATA", "NDEATH", "STATE", "NCMD", "XYZ"])
    )
    topic = (
        spb_topic(kind) if kind != "XYZ" else draw(st.sampled_from(["spBv1.0/bench", "spBv1.0/bench/NDATA"]))
    )
    if draw(st.integers(0, 3)) == 0:
        return topic, draw(st.binary(max_size=200))
    metrics = []
    for _ in range(draw(st.integers(0, 5))):
        v = draw(metric_values)
        dt = {bool: DataType.BOOLEAN, int: DataType.INT64, float: DataType.DOUBLE, str: DataType.STRING}.get(
            type(v), DataType.DOUBLE
        )
        named = draw(st.booleans())
        metrics.append(
            Metric(
                name=f"m{draw(st.integers(0, 4))}" if named else None,
                alias=draw(st.integers(0, 6)) if (not named or draw(st.booleans())) else None,
                datatype=dt,
                value=v,
            )
        )
    p = Payload(
        timestamp=draw(st.integers(0, 2**63)),
        seq=draw(st.one_of(st.none(), st.integers(0, 300))),
        metrics=metrics,
    )
    raw = encode_payload(p)
    if draw(st.booleans()) and raw:  # flip, cut or extend the protobuf
        op = draw(st.sampled_from(["flip", "cut", "append"]))
        i = draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw = raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1 :]
        elif op == "cut":
            raw = raw[:i]
        else:
            raw = raw + draw(st.binary(min_size=1, max_size=20))
    return topic, raw


@st.composite
def configs(draw: st.DrawFn) -> bytes:
    seed = config_seed()
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=400))
    lines = seed.decode().splitlines()
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "replace_value", "junk", "duplicate", "indent"]))
        line = lines[i]
        if op == "delete":
            del lines[i]
        elif op == "replace_value" and ":" in line:
            k = draw(st.sampled_from([j for j, c in enumerate(line) if c == ":"]))
            junk = draw(
                st.sampled_from(
                    [
                        "",
                        "-1",
                        "1e309",
                        "nan",
                        "[]",
                        "{}",
                        "'x'",
                        '"10 parsec"',
                        "null",
                        "!!python/object:os.system",
                        "*alias",
                        "&a 1",
                        "999999999999999999999",
                    ]
                )
            )
            rest = line[k + 1 :]
            cut = rest.find(",")
            lines[i] = line[: k + 1] + " " + junk + (rest[cut:] if cut >= 0 and draw(st.booleans()) else "")
        elif op == "junk":
            lines[i] = draw(st.text(max_size=40))
        elif op == "duplicate":
            lines.insert(i, line)
        else:
            lines[i] = " " * draw(st.integers(0, 6)) + line.lstrip()
    return "\n".join(lines).encode("utf-8", "surrogatepass")


def _run(n_mqtt: int, n_config: int) -> tuple[Tally, Tally, Tally, list[str]]:
    json_t, spb_t, cfg_t = Tally(), Tally(), Tally()
    errors: list[str] = []
    router = json_router()

    @settings(
        max_examples=n_mqtt // 2,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(json_messages())
    def fuzz_json(payload: bytes) -> None:
        feed_mqtt(router, json_t, JSON_TOPIC, payload)

    @settings(
        max_examples=n_mqtt // 2,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(sparkplug_messages())
    def fuzz_sparkplug(msg: tuple[str, bytes]) -> None:
        feed_mqtt(router, spb_t, *msg)

    @settings(
        max_examples=n_config,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(configs())
    def fuzz_config(text: bytes) -> None:
        feed_config(text, cfg_t)

    for fn in (fuzz_json, fuzz_sparkplug, fuzz_config):
        try:
            fn()
        except Exception as exc:  # keep going: the figure counts every surface
            errors.append(f"{fn.__name__}: {type(exc).__name__}: {str(exc)[:500]}")
    return json_t, spb_t, cfg_t, errors


@pytest.mark.parametrize(
    ("n_mqtt", "n_config"), [(600, 150), pytest.param(20_000, 2_000, marks=pytest.mark.slow, id="full")]
)
def test_decoders_and_config_loader_never_crash(n_mqtt: int, n_config: int) -> None:
    started = time.monotonic()
    json_t, spb_t, cfg_t, errors = _run(n_mqtt, n_config)
    figure = {
        "mqtt_json": json_t.as_dict(),
        "sparkplug": spb_t.as_dict(),
        "config": cfg_t.as_dict(),
        "failures": errors,
        "engine": "hypothesis",
    }
    crashes = json_t.crashes + spb_t.crashes + cfg_t.crashes
    ok = crashes == 0 and not errors and json_t.bad > 0 and spb_t.bad > 0 and cfg_t.bad > 0
    record(
        9,
        "fuzzing: MQTT JSON, Sparkplug B, site config (hypothesis)",
        figure,
        ok,
        "full" if n_mqtt > 1000 else "ci",
        time.monotonic() - started,
    )
    assert not errors, errors
    assert crashes == 0
    assert json_t.bad and spb_t.bad and cfg_t.bad, "the generators must reach the refusal paths"


def test_atheris_targets(tmp_path: Path) -> None:
    """Each atheris target for a fixed number of runs (coverage-guided, seeded); zero crashes."""
    pytest.importorskip("atheris")
    started = time.monotonic()
    runs = int(os.environ.get("SYMTWIN_ATHERIS_RUNS", "3000"))
    figure: dict[str, object] = {"engine": "atheris", "runs_per_target": runs}
    ok = True
    for target in sorted(ATHERIS.glob("fuzz_*.py")):
        out = tmp_path / f"{target.stem}.json"
        corpus = tmp_path / f"corpus_{target.stem}"
        corpus.mkdir()
        for i, seed in enumerate(seed_corpus(target.stem.removeprefix("fuzz_"))):
            (corpus / f"seed{i}").write_bytes(seed)
        n = runs // 10 if target.stem == "fuzz_config" else runs  # a config load takes ~0.1 s
        figure[f"{target.stem}_runs"] = n
        proc = subprocess.run(
            [
                sys.executable,
                str(target),
                str(corpus),
                f"-runs={n}",
                "-seed=12",
                f"-artifact_prefix={tmp_path}/",
                "-print_final_stats=1",
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), "FUZZ_TALLY": str(out)},
            capture_output=True,
            text=True,
            timeout=600,
        )
        tally = json.loads(out.read_text()) if out.exists() else {}
        figure[target.stem] = {
            "exit": proc.returncode,
            **tally,
            "exception": [
                ln for ln in proc.stderr.splitlines() if re.match(r"^[\w.]+(Error|Exception)\b", ln)
            ][:2],
        }
        ok = ok and proc.returncode == 0 and tally.get("crashes", 1) == 0
    record(
        9,
        "fuzzing: MQTT JSON, Sparkplug B, site config (atheris)",
        figure,
        ok,
        "ci",
        time.monotonic() - started,
    )
    assert ok, figure
