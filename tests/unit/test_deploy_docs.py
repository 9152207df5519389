"""docs/operations.md stays true: the files it names exist, the metrics it explains are exposed."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.test_deploy_grafana import runtime_metric_names

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "operations.md"


def test_linked_and_named_files_exist() -> None:
    text = DOC.read_text(encoding="utf-8")
    links = re.findall(r"\]\((\.\./[^)#]+)\)", text)
    assert links
    for link in links:
        assert (DOC.parent / link).resolve().exists(), link
    # folders made on the edge PC (docker/.gitignore) are named but never committed
    made_on_site = [f"docker{ln.rstrip('/')}" for ln in (REPO / "docker" / ".gitignore").read_text().split()
                    if ln.startswith("/")]  # fmt: skip
    for path in re.findall(r"`((?:docker|deploy)/[\w./-]+)`", text):
        if any(path.rstrip("/") == m or path.startswith(m + "/") for m in made_on_site):
            continue
        assert (REPO / path).exists(), path


def test_metrics_table_names_exposed_metrics() -> None:
    exposed = runtime_metric_names()
    table = [ln for ln in DOC.read_text(encoding="utf-8").splitlines() if ln.startswith("| `symtwin_")]
    assert len(table) >= 10
    for line in table:
        for name in re.findall(r"`(symtwin_\w+)", line.split("|")[1]):
            assert {name, f"{name}_bucket"} & exposed, f"{name} is documented but not exposed"
    documented = {n for ln in table for n in re.findall(r"`(symtwin_\w+)", ln.split("|")[1])}
    for name in exposed:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if not name.startswith("symtwin_web_"):
            assert name in documented or base in documented, f"{name} is exposed but not explained"
