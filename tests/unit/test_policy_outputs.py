"""Broker ACL and database plan generated from a policy: exactly the grants, nothing more."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from adapters.base import Sample
from symtwin.governance.influx import bucket_for, plan_influx
from symtwin.governance.mosquitto import (
    GovernanceConfigError,
    Republisher,
    acl_text,
    password_env_var,
    topic_for,
)
from symtwin.governance.policy import Party, Resolution, SharingRule, TagGroup, TagInfo, build_policy

POLICY = build_policy(
    [Party("powerco"), Party("pharma"), Party("utility")],
    [
        TagInfo("pc.flow", "powerco"),
        TagInfo("pc.load", "powerco"),
        TagInfo("pc.cost", "powerco"),
        TagInfo("ph.demand", "pharma"),
    ],
    [TagGroup("x", ("pc.flow",)), TagGroup("ops", ("pc.load",)), TagGroup("ph", ("ph.demand",))],
    [
        SharingRule("x", "pharma", Resolution.raw()),
        SharingRule("ops", "pharma", Resolution.aggregated(900)),
        SharingRule("x", "utility", Resolution.aggregated(3600)),
        SharingRule("ph", "powerco", Resolution.aggregated(900)),
    ],
)


def test_acl_lists_exactly_the_grants():
    sections = {}
    current = None
    for line in acl_text(POLICY).splitlines():
        if line.startswith("user "):
            current = line.split()[1]
            sections[current] = []
        elif line.startswith("topic") and current is not None:
            sections[current].append(line)
        elif line.startswith("topic"):
            pytest.fail("an ACL line outside a user section would apply to anonymous clients")
    assert sections["pharma"] == [
        "topic readwrite park/pharma/#",
        "topic read park/powerco/raw/pc.flow",
        "topic read park/powerco/agg/15min/pc.load/#",
    ]
    assert sections["utility"] == [
        "topic readwrite park/utility/#",
        "topic read park/powerco/agg/1h/pc.flow/#",
    ]
    assert sections["powerco"] == [
        "topic readwrite park/powerco/#",
        "topic read park/pharma/agg/15min/ph.demand/#",
    ]


def test_topic_for_and_republisher():
    assert topic_for(POLICY, "pc.flow") == "park/powerco/raw/pc.flow"
    assert topic_for(POLICY, "pc.load:max_15min") == "park/powerco/agg/15min/pc.load/max"
    rep = Republisher(POLICY, "powerco")
    assert "park/powerco/raw/pc.load" not in rep.topics()
    out = rep.push([Sample("pc.flow", 1.0, 2.0), Sample("pc.cost", 1.0, 9.0), Sample("pc.load", 1.0, 3.0)])
    assert out == [("park/powerco/raw/pc.flow", Sample("pc.flow", 1.0, 2.0))]
    later = rep.flush(3600.0)
    assert {t for t, _ in later} == {
        f"park/powerco/agg/{i}/{tag}/{s}"
        for i, tag in (("15min", "pc.load"), ("1h", "pc.flow"))
        for s in ("mean", "min", "max")
    }


def test_ids_unfit_for_topics_are_refused():
    bad = build_policy([Party("a/b"), Party("c")], [TagInfo("t", "a/b")], [], [])
    with pytest.raises(GovernanceConfigError, match="a/b"):
        acl_text(bad)
    assert password_env_var("power-co.1") == "SYMTWIN_MQTT_PASSWORD_POWER_CO_1"


def test_influx_plan_scopes_tokens_to_pairs():
    plan = plan_influx(POLICY, org="park")
    names = {b.name for b in plan.buckets}
    assert names == {
        "symtwin-powerco",
        "symtwin-pharma",
        "symtwin-utility",
        "symtwin-powerco-to-pharma",
        "symtwin-powerco-to-utility",
        "symtwin-pharma-to-powerco",
    }
    perms = {t.party: {(p.action, p.bucket) for p in t.permissions} for t in plan.tokens}
    assert perms["utility"] == {
        ("read", "symtwin-utility"),
        ("write", "symtwin-utility"),
        ("read", "symtwin-powerco-to-utility"),
    }
    assert ("write", "symtwin-powerco-to-pharma") not in perms["pharma"]
    assert ("write", "symtwin-powerco-to-pharma") in perms["powerco"]
    assert not any("pharma" in b for _, b in perms["utility"])
    assert bucket_for(POLICY, "utility", "pc.flow:mean_1h") == "symtwin-powerco-to-utility"
    assert bucket_for(POLICY, "powerco", "pc.cost") == "symtwin-powerco"
    data = json.loads(plan.to_json())
    assert data["org"] == "park" and len(data["tokens"]) == 3


def test_influx_script_is_valid_bash_and_never_prints_tokens():
    script = plan_influx(POLICY).shell_script()
    assert "umask 077" in script and "--json >" in script
    assert script.count("influx auth create") == 3
    bash = shutil.which("bash")
    if bash:
        subprocess.run([bash, "-n"], input=script, text=True, check=True)
