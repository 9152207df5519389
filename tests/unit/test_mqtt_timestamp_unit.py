"""A JSON binding's ``timestamp_unit``: epoch milliseconds from the config reach the decoder as seconds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from adapters.mqtt import TimestampUnit, decode_json
from symtwin.config import load_site
from symtwin.config.site import ConfigError
from symtwin.runtime.mqtt_wiring import mqtt_wiring

REPO = Path(__file__).resolve().parents[2]
TS = 1_764_000_000.25  # [s since the epoch]


def _site(tmp_path: Path, unit: str | None) -> Path:
    text = (REPO / "configs" / "demo.yaml").read_text()
    text = text.replace("path: profiles/", f"path: {REPO / 'configs' / 'profiles'}/")
    extra = f", timestamp_unit: {unit}" if unit is not None else ""
    text = text.replace(
        'binding: {opcua: {node_id: "ns=2;s=factory.heat"}}',
        'binding: {mqtt: {topic: "park/factory/heat", pointer: "/v", timestamp_pointer: "/t"' + extra + "}}",
    )
    text += (
        "adapters:\n  mqtt: {host: 127.0.0.1, port: 1883, client_id: t}\n" if "adapters:" not in text else ""
    )
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("unit", "stamp", "expected"),
    [(None, TS, TimestampUnit.SECONDS), ("ms", TS * 1e3, TimestampUnit.MILLISECONDS)],
)
def test_timestamp_unit_from_the_config_decodes_to_seconds(
    tmp_path: Path, unit: str | None, stamp: float, expected: TimestampUnit
) -> None:
    wiring = mqtt_wiring(load_site(_site(tmp_path, unit)))
    assert wiring is not None
    (field,) = wiring.json_topics["park/factory/heat"]
    assert field.timestamp_unit is expected
    out = decode_json(json.dumps({"v": 1.5, "t": stamp}).encode(), [field], received_at=TS + 60.0)
    assert [s.timestamp for s in out.samples] == [pytest.approx(TS, abs=1e-3)]


def test_an_unknown_timestamp_unit_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="timestamp_unit"):
        load_site(_site(tmp_path, "us"))
