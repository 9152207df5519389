"""Broken configs: each exits with code 2 and a message naming the file, line and field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from symtwin.cli import main

DEMO = (Path(__file__).resolve().parents[2] / "configs" / "demo.yaml").read_text()


def _write(tmp_path: Path, text: str, repo_root: Path) -> Path:
    (tmp_path / "profiles").symlink_to(repo_root / "configs" / "profiles")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def _line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.split("\n"), start=1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in config")


# (name, mutate demo text, text on the offending line, field path expected in the message, message fragment)
CASES = [
    ("yaml_syntax", lambda s: s.replace("  - {id: factory, name:", "  - {id: factory name:", 1),
     "{id: factory name:", "(top level)", "YAML syntax error"),
    ("control_character", lambda s: s.replace("  name: demo\n", "  name: demo\x0b\n", 1),
     "name: demo\x0b", "(top level)", "control characters are not allowed"),
    ("unknown_key", lambda s: s.replace("  timezone_x: x\n", "").replace("site:\n  name: demo", "site:\n  name: demo\n  colour: blue"),
     "colour: blue", "site.colour", "unknown key 'colour'"),
    ("missing_required", lambda s: s.replace("  name: demo\n", "  nme: demo\n"),
     "nme: demo", "site.nme", "unknown key"),
    ("missing_required_field", lambda s: s.replace("{id: storage, owner: utility, model: storage_tank, volume: \"500 m3\", ", "{id: storage, owner: utility, model: storage_tank, "),
     "model: storage_tank", "units[2]", "required parameter 'volume'"),
    ("wrong_type", lambda s: s.replace("nodes: 10", "nodes: many"),
     "nodes: many", "units[2].nodes", "expected '<number> <unit>'"),
    ("empty_value", lambda s: s.replace("capacity_mw: 6,", "capacity: ,"),
     "capacity: ,", "units[3].capacity", "expected a number with a unit"),
    ("negative_capacity", lambda s: s.replace("capacity_mw: 6", "capacity_mw: -6"),
     "capacity_mw: -6", "units[3].capacity_mw", "physically impossible"),
    ("unknown_model", lambda s: s.replace("model: gas_boiler", "model: gas_boiler_xl"),
     "model: gas_boiler_xl", "units[3].model", "unknown unit model 'gas_boiler_xl'"),
    ("connection_missing_unit", lambda s: s.replace("from: boiler.heat_out", "from: boilr.heat_out"),
     "from: boilr.heat_out", "connections[2].from", "unit that does not exist: 'boilr'"),
    ("tag_missing_quantity", lambda s: s.replace("quantity: top_temperature", "quantity: top_temp"),
     "quantity: top_temp", "tags[3].quantity", "has no quantity 'top_temp'"),
    ("duplicate_id", lambda s: s.replace("{id: pipe, owner: utility", "{id: hx, owner: utility"),
     "{id: hx, owner: utility, model: dh_pipe", "units[4].id", "duplicate id 'hx'"),
    ("setpoint_without_bounds", lambda s: s.replace("direction: setpoint, bounds: [0, 100], rate_limit: \"10 %/min\", safe_value: 50,\n     binding: {opcua: {node_id: \"ns=2;s=factory.use_sp\"",
                                                    "direction: setpoint, rate_limit: \"10 %/min\", safe_value: 50,\n     binding: {opcua: {node_id: \"ns=2;s=factory.use_sp\""),
     "{id: factory.use_sp", "tags[1].bounds", "a setpoint needs bounds"),
    ("contract_on_non_exchange", lambda s: s.replace("connection: factory_to_hx, contract", "connection: hx_to_pipe, contract"),
     "connection: hx_to_pipe", "exchanges[0].connection", "not an exchange"),
    ("contract_unreferenced", lambda s: s.replace("settlement_period: month}\n", "settlement_period: month}\n  - {id: spare_contract, price: {rule: fixed, eur_per_mwh: 1}}\n"),
     "spare_contract", "contracts[1].id", "governs no exchange"),
    ("profile_csv_missing", lambda s: s.replace("csv: {path: profiles/ntnu-campus-dh-hourly.csv, value_column: Toa}", "csv: {path: profiles/nope.csv, value_column: Toa}"),
     "profiles/nope.csv", "profiles[2].csv.path", "profile CSV not found"),
    ("profile_csv_bad_column", lambda s: s.replace("value_column: Toa", "value_column: Tout"),
     "value_column: Tout", "profiles[2].csv", "column 'Tout' is not in"),
    ("wrong_unit", lambda s: s.replace("temperature: \"90 degC\"", "temperature: \"90 MW\""),
     "temperature: \"90 MW\"", "units[0].temperature", "not a unit of K"),
    ("plain_text_secret", lambda s: s + "adapters:\n  mqtt:\n    host: 127.0.0.1\n    password: hunter2\n",
     "password: hunter2", "adapters.mqtt.password", "plain text"),
    ("sharing_contradiction", lambda s: s.replace("    - {group: town_load, recipient: factory, resolution: {aggregated: 1 h}}",
                                                  "    - {group: town_load, recipient: factory, resolution: {aggregated: 1 h}}\n    - {group: town_load, recipient: factory, resolution: raw}"),
     "recipient: factory, resolution: raw}", "sharing.rules[2].resolution", "one resolution only"),
    ("reversed_temperatures", lambda s: s.replace("design_load_mw: 8,", "design_load_mw: 8, min_supply_temperature: \"95 degC\","),
     "design_load_mw: 8, min_supply", "units[5]", "must be below max_supply_temperature"),
    ("forecast_unknown_series", lambda s: s + "forecasts:\n  - id: town_fc\n    series: town.heat_demand\n"
                                              "    mqtt: {topic: park/forecast/town}\n",
     "series: town.heat_demand", "forecasts[0].series", "unknown series 'town.heat_demand'"),
]


@pytest.mark.parametrize(("name", "mutate", "line_text", "field", "fragment"), CASES, ids=[c[0] for c in CASES])
def test_broken_config_exits_2_naming_line_and_field(
    tmp_path: Path, repo_root: Path, capsys: pytest.CaptureFixture[str],
    name: str, mutate: object, line_text: str, field: str, fragment: str,
) -> None:
    text = mutate(DEMO)  # type: ignore[operator]
    assert text != DEMO, "the mutation did not apply"
    path = _write(tmp_path, text, repo_root)
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    line = _line_of(text, line_text)
    assert re.search(rf"{re.escape(str(path))}:{line}:\d+: {re.escape(field)}", err), err
    assert fragment in err, err
    assert "what to do" in err


def test_reference_configs_validate(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("kalundborg.yaml", "demo.yaml"):
        assert main(["validate", str(repo_root / "configs" / name)]) == 0
    out = capsys.readouterr().out
    assert "steam_to_pharma" in out and "powerco -> pharma" in out
    assert "configs/demo.yaml: OK" in out


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["validate", str(tmp_path / "absent.yaml")])
    assert exc.value.code == 2
    assert "file not found" in capsys.readouterr().err
