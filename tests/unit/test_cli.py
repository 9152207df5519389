"""The command line: fast help that loads no heavy modules, version, schema, usage errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from symtwin.cli import main


def test_help_imports_neither_numba_nor_casadi() -> None:
    code = (
        "import sys, contextlib, io\n"
        "from symtwin.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'validate' in out.getvalue()\n"
        "print(sorted(m for m in ('numba', 'casadi', 'do_mpc', 'asyncua') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith("symtwin ")


def test_schema_is_json_schema_refusing_unknown_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["additionalProperties"] is False
    assert {"parties", "units", "tags", "sharing", "contracts"} <= set(schema["properties"])
    assert "chp_boiler" in schema["$comment"]


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
