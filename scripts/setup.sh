#!/usr/bin/env bash
# Install what symtwin needs into .venv; with --test also the test tools and the real servers the
# integration and browser tests start (Debian: mosquitto, victoria-metrics, chromium; npm: node-opcua).
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[ "${1:-}" = "--test" ] && want_test=1

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating virtual environment .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$( (cat pyproject.toml; echo "$want_test") | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
  echo "==> installing Python packages (first run takes a few minutes)"
  .venv/bin/python -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
  if [ $want_test = 1 ]; then extra='.[test]'; else extra='.'; fi
  .venv/bin/python -m pip install --quiet -e "$extra" 2>&1 | grep -vE "is ignored|^\s*$" || true
  .venv/bin/python -c "import symtwin, numba, casadi, do_mpc, asyncua" || { echo "Python packages did not install" >&2; exit 1; }
  rm -f .venv/.installed-*
  touch "$stamp"
fi

[ $want_test = 1 ] || exit 0

missing=()
command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_passwd >/dev/null || missing+=(mosquitto-clients)
command -v victoria-metrics >/dev/null || missing+=(victoria-metrics)
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then SUDO=sudo; else
      echo "ERROR: the tests need Debian packages ${missing[*]}; run as root or install them:" >&2
      echo "       apt-get update && apt-get install -y ${missing[*]}" >&2
      exit 1
    fi
  fi
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null; }; then
    echo "ERROR: could not install ${missing[*]} with apt-get; the integration tests need real servers." >&2
    echo "       Install them by hand (apt-get install ${missing[*]}) and run again." >&2
    exit 1
  fi
fi
# The Debian mosquitto package starts a system broker on port 1883; tests use their own brokers.
if [ -f tests/support/nodeopcua/install.sh ]; then
  bash tests/support/nodeopcua/install.sh
fi
