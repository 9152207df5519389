from __future__ import annotations

import json
import stat

from symtwin.cli import main


def test_governance_commands_on_the_reference_park(tmp_path, repo_root, capsys, monkeypatch):
    config = str(repo_root / "configs/kalundborg.yaml")
    monkeypatch.setenv("SYMTWIN_MQTT_PASSWORD_PHARMA", "from-the-environment")
    assert main(["governance", "mosquitto", config, "--out", str(tmp_path / "mq")]) == 0
    out = capsys.readouterr().out
    assert "from-the-environment" not in out
    secrets = (tmp_path / "mq" / "mqtt-passwords.env").read_text()
    assert "PHARMA" not in secrets and "SYMTWIN_MQTT_PASSWORD_POWERCO=" in secrets
    assert stat.S_IMODE((tmp_path / "mq" / "passwd").stat().st_mode) == 0o600
    acl = (tmp_path / "mq" / "acl").read_text()
    assert "topic read park/powerco/raw/powerco.chp.fuel_flow" not in acl  # chp_internals: none for pharma

    assert (
        main(["governance", "influx", config, "--out", str(tmp_path / "influx"), "--org", "kalundborg"]) == 0
    )
    plan = json.loads((tmp_path / "influx" / "influx-plan.json").read_text())
    assert plan["org"] == "kalundborg" and {t["party"] for t in plan["tokens"]} == {
        "powerco",
        "pharma",
        "refinery",
        "utility",
    }

    assert main(["governance", "show", config, "--party", "pharma"]) == 0
    shown = capsys.readouterr().out
    assert "powerco.chp.steam_flow" in shown and "powerco.chp.fuel_flow" not in shown
