"""The controller-health dashboard against a real Prometheus-compatible store.

VictoriaMetrics (the compose stack's metrics store) scrapes, with docker/victoriametrics/scrape.yml
pointed at loopback, an HTTP endpoint rendering a real ``symtwin.runtime.metrics.Metrics`` registry that
holds every metric the service registers; then every PromQL expression of the dashboard must parse and
return data.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from symtwin.runtime.metrics import Metrics
from tests.support.servers import free_port, wait_for_port
from tests.unit.test_deploy_grafana import feed, runtime_metric_calls

REPO = Path(__file__).resolve().parents[2]


class _MetricsServer:
    def __init__(self, registry: Metrics) -> None:
        registry_ref = registry

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = registry_ref.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def scraped(tmp_path: Path) -> Iterator[tuple[str, Metrics]]:
    """(VictoriaMetrics URL, registry) with the registry scraped once a second."""
    exe = shutil.which("victoria-metrics")
    if exe is None:
        pytest.skip("victoria-metrics not installed (Debian package)")
    registry = Metrics()
    server = _MetricsServer(registry)
    scrape = yaml.safe_load((REPO / "docker" / "victoriametrics" / "scrape.yml").read_text())
    scrape["global"]["scrape_interval"] = "1s"
    scrape["scrape_configs"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{server.port}"]
    config = tmp_path / "scrape.yml"
    config.write_text(yaml.safe_dump(scrape))
    port = free_port()
    proc = subprocess.Popen(
        [exe, f"-storageDataPath={tmp_path / 'vm'}", f"-httpListenAddr=127.0.0.1:{port}",
         f"-promscrape.config={config}", "-search.latencyOffset=0s", "-loggerLevel=ERROR"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_for_port(port)
        yield f"http://127.0.0.1:{port}", registry
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        server.close()


def _query(url: str, expr: str) -> dict[str, object]:
    q = urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as r:
            return dict(json.load(r))
    except urllib.error.HTTPError as exc:
        return {"status": "error", "error": exc.read().decode(errors="replace")}


def test_every_controller_health_query_returns_data(scraped: tuple[str, Metrics]) -> None:
    url, registry = scraped
    calls = runtime_metric_calls()
    dashboard = json.loads(
        (REPO / "docker" / "grafana" / "dashboards" / "controller-health.json").read_text()
    )
    exprs = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets", [])]
    assert exprs
    # several scrapes with growing counters, so rate() and histogram_quantile() have something to work on
    deadline = time.monotonic() + 20
    missing: list[str] = [e for _, e in exprs]
    while time.monotonic() < deadline:
        feed(registry, calls, step=3)
        time.sleep(1.0)
        missing = []
        for title, expr in exprs:
            answer = _query(url, expr)
            assert answer.get("status") == "success", f"{title}: {expr}: {answer.get('error')}"
            result = answer["data"]["result"]  # type: ignore[index]
            if not result:
                missing.append(expr)
        if not missing:
            break
    assert missing == [], f"no data for {missing}"
