from __future__ import annotations

from symtwin.cli import main
from symtwin.governance.audit import AuditLog


def test_audit_verify_exit_codes(tmp_path, capsys):
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path)
    for k in range(3):
        log.append(recipient="pharma", channel="mqtt", tags={"a": "raw"}, start=float(k), end=float(k + 1))
    assert main(["audit", "verify", str(path)]) == 0
    assert "3 records" in capsys.readouterr().out
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[2], lines[1]]) + "\n")
    assert main(["audit", "verify", str(path)]) == 1
    err = capsys.readouterr().err
    assert "reordering" in err and "line 2" in err
    assert main(["audit", "verify", str(tmp_path / "none.jsonl")]) == 2
