"""mosquitto broker config generated from the sharing policy: config file, ACL and password file.

Topic layout (the simplest that mosquitto ACLs express exactly, one ACL line per grant):

``park/<owner>/raw/<tag>``
    raw values of ``<tag>``; readable by every party granted it raw.
``park/<owner>/agg/<interval>/<tag>/<stat>``
    ``<stat>`` in mean, min, max over ``<interval>`` (``15min``, ``1h``...); readable by every party
    granted ``<tag>`` aggregated at that interval.
``park/<owner>/...`` (anything else: commands, status, private data)
    the owner's own namespace: the owner reads and writes all of it, nobody else anything.

Each party's client logs in as the party id. It may write only under ``park/<self>/`` and read its
own namespace plus exactly the raw and aggregated topics its grants name; anonymous clients are
refused. An owner publishes only what someone is granted (see :class:`Republisher`), so withheld
data never reaches the broker, and aggregates are computed before they leave the owner's service.

Passwords come from ``SYMTWIN_MQTT_PASSWORD_<PARTY>`` in the environment or are generated and
written to ``mqtt-passwords.env`` (mode 0600) in the output folder; they are never logged. The
password file is hashed by mosquitto's own ``mosquitto_passwd -U`` (so no password appears on a
command line). mosquitto started as root drops to user ``mosquitto`` before it reads the password
and ACL files: install them readable by that user, or set ``run_as_user``.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from adapters.base import Sample
from symtwin.governance.policy import (
    AGG_STATS,
    ResolutionKind,
    ShareRecorder,
    SharingPolicy,
    StreamFilter,
    format_interval,
    split_output_name,
)

__all__ = [
    "TOPIC_ROOT",
    "BrokerFiles",
    "BrokerTls",
    "GovernanceConfigError",
    "Republisher",
    "acl_text",
    "agg_topic",
    "mosquitto_conf_text",
    "password_env_var",
    "raw_topic",
    "topic_for",
    "write_broker_config",
]

log = logging.getLogger(__name__)

TOPIC_ROOT = "park"
_BAD_LEVEL = re.compile(r"[/+#\s\x00:]")


class GovernanceConfigError(ValueError):
    """The policy cannot be turned into broker or database config (e.g. a tag id unfit for a topic)."""


def _check_level(kind: str, value: str) -> str:
    if not value or _BAD_LEVEL.search(value):
        raise GovernanceConfigError(
            f"{kind} id {value!r} cannot be an MQTT topic level or user name "
            "(no '/', '+', '#', ':', spaces); rename it in the site config"
        )
    return value


def raw_topic(owner: str, tag: str) -> str:
    return f"{TOPIC_ROOT}/{owner}/raw/{tag}"


def agg_topic(owner: str, tag: str, stat: str, interval_s: float) -> str:
    return f"{TOPIC_ROOT}/{owner}/agg/{format_interval(interval_s)}/{tag}/{stat}"


def topic_for(policy: SharingPolicy, name: str) -> str:
    """Topic of an output name from the enforcement layer (``tag`` or ``tag:mean_15min``)."""
    tag, stat, label = split_output_name(name)
    owner = policy.owner_of(tag)
    if stat is None:
        return raw_topic(owner, tag)
    return f"{TOPIC_ROOT}/{owner}/agg/{label}/{tag}/{stat}"


def password_env_var(party: str) -> str:
    """Environment variable holding ``party``'s broker password: ``SYMTWIN_MQTT_PASSWORD_<PARTY>``."""
    return "SYMTWIN_MQTT_PASSWORD_" + re.sub(r"[^A-Za-z0-9]", "_", party).upper()


def acl_text(policy: SharingPolicy) -> str:
    """The mosquitto ``acl_file``: per party, its own namespace read-write and one read line per grant."""
    lines = [
        "# symtwin: generated from the site's sharing policy; regenerate instead of editing.",
        "# No lines before the first 'user': anonymous clients get nothing (and are refused anyway).",
    ]
    for party in policy.party_ids:
        _check_level("party", party)
        lines += ["", f"user {party}", f"topic readwrite {TOPIC_ROOT}/{party}/#"]
        for tag, res in policy.grants(party).items():
            owner = policy.owner_of(tag)
            if owner == party:
                continue
            _check_level("tag", tag)
            if res.kind is ResolutionKind.RAW:
                lines.append(f"topic read {raw_topic(owner, tag)}")
            elif res.kind is ResolutionKind.AGGREGATED:
                assert res.interval_s is not None
                lines.append(f"topic read {TOPIC_ROOT}/{owner}/agg/{format_interval(res.interval_s)}/{tag}/#")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class BrokerTls:
    """Server-side TLS for the listener: CA bundle, server certificate and key (paths on the broker host)."""

    cafile: Path
    certfile: Path
    keyfile: Path
    min_version: str = "tlsv1.2"


def mosquitto_conf_text(
    files_dir: Path,
    *,
    port: int = 1883,
    bind_address: str | None = "127.0.0.1",
    run_as_user: str | None = None,
    tls: BrokerTls | None = None,
) -> str:
    """The mosquitto config: one authenticated listener using the generated password and ACL files."""
    listener = f"listener {port} {bind_address}" if bind_address else f"listener {port}"
    lines = [
        "# symtwin: generated from the site's sharing policy; regenerate instead of editing.",
        "per_listener_settings false",
        listener,
        "allow_anonymous false",
        f"password_file {files_dir / 'passwd'}",
        f"acl_file {files_dir / 'acl'}",
    ]
    if tls is not None:
        # clients still log in with user name and password; TLS keeps those and the data private
        lines += [
            f"cafile {tls.cafile}",
            f"certfile {tls.certfile}",
            f"keyfile {tls.keyfile}",
            f"tls_version {tls.min_version}",
            "require_certificate false",
        ]
    if run_as_user:
        lines.insert(1, f"user {run_as_user}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class BrokerFiles:
    conf: Path
    acl: Path
    passwd: Path
    secrets: Path | None  # generated passwords (0600), None when all came from the environment
    generated_for: tuple[str, ...]  # parties whose password was generated


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to a file only its owner can read (created 0600, never briefly wider)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def write_broker_config(
    policy: SharingPolicy,
    out_dir: Path,
    *,
    port: int = 1883,
    bind_address: str | None = "127.0.0.1",
    files_dir: Path | None = None,
    run_as_user: str | None = None,
    environ: Mapping[str, str] | None = None,
    mosquitto_passwd: str | None = None,
    tls: BrokerTls | None = None,
) -> BrokerFiles:
    """Write ``mosquitto.conf``, ``acl`` and ``passwd`` (hashed) into ``out_dir``.

    files_dir: where the files will sit on the broker host (paths inside mosquitto.conf); default
    ``out_dir`` itself. environ: where passwords are looked up (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    binary = mosquitto_passwd or shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    if not Path(binary).exists():
        raise GovernanceConfigError(
            f"mosquitto_passwd not found ({binary}); install the Debian package 'mosquitto'"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    acl = acl_text(policy)  # validates ids first, before anything is written

    passwords: dict[str, str] = {}
    generated: list[str] = []
    for party in policy.party_ids:
        value = env.get(password_env_var(party))
        if not value:
            value = secrets.token_urlsafe(24)
            generated.append(party)
        if "\n" in value:
            raise GovernanceConfigError(f"{password_env_var(party)} contains a newline")
        passwords[party] = value

    passwd = out_dir / "passwd"
    _write_private(passwd, "".join(f"{p}:{pw}\n" for p, pw in passwords.items()))
    try:
        done = subprocess.run(
            [binary, "-U", str(passwd)], capture_output=True, text=True, timeout=60, check=False
        )
    except BaseException:
        passwd.unlink(missing_ok=True)  # never leave plain passwords behind
        raise
    if done.returncode != 0:
        passwd.unlink(missing_ok=True)
        raise GovernanceConfigError(f"mosquitto_passwd -U failed ({done.returncode}): {done.stderr.strip()}")

    secrets_path: Path | None = None
    if generated:
        secrets_path = out_dir / "mqtt-passwords.env"
        _write_private(secrets_path, "".join(f"{password_env_var(p)}={passwords[p]}\n" for p in generated))
    acl_path = out_dir / "acl"
    _write_private(acl_path, acl)
    conf_path = out_dir / "mosquitto.conf"
    where = (files_dir or out_dir).absolute()
    conf_path.write_text(
        mosquitto_conf_text(where, port=port, bind_address=bind_address, run_as_user=run_as_user, tls=tls)
    )
    log.info("wrote mosquitto config for %d parties to %s", len(passwords), out_dir)
    return BrokerFiles(conf_path, acl_path, passwd, secrets_path, tuple(generated))


class Republisher:
    """What an owner's service publishes to the park broker: (topic, sample) for every granted output.

    Raw values go to ``park/<owner>/raw/<tag>`` only if some other party is granted them raw;
    aggregates once per distinct interval (shared by every recipient of that interval). Tags that
    nobody else may see are never published.
    """

    def __init__(self, policy: SharingPolicy, owner: str, *, recorder: ShareRecorder | None = None) -> None:
        self.owner = owner
        self._policy = policy
        self._recorder = recorder
        # recipient -> (grant labels, output names it may read)
        self._readers: dict[str, tuple[dict[str, str], frozenset[str]]] = {}
        for recipient, grants in policy.shared_by(owner).items():
            names = policy.visible_names(recipient)
            self._readers[recipient] = ({t: r.label for t, r in grants.items()}, names)
        raw: set[str] = set()
        by_interval: dict[float, set[str]] = {}
        for grants in policy.shared_by(owner).values():
            for tag, res in grants.items():
                if res.kind is ResolutionKind.RAW:
                    raw.add(tag)
                elif res.interval_s is not None:
                    by_interval.setdefault(res.interval_s, set()).add(tag)
        self._raw = frozenset(raw)
        self._filters = [
            StreamFilter.from_grants(raw=(), aggregated=dict.fromkeys(tags, interval))
            for interval, tags in sorted(by_interval.items())
        ]
        self._topics: dict[str, str] = {t: raw_topic(owner, t) for t in raw}
        for interval, tags in by_interval.items():
            for tag in tags:
                for stat in AGG_STATS:
                    name = f"{tag}:{stat}_{format_interval(interval)}"
                    self._topics[name] = agg_topic(owner, tag, stat, interval)

    def topics(self) -> frozenset[str]:
        """Every topic this owner may publish shared data on."""
        return frozenset(self._topics.values())

    def push(self, samples: Iterable[Sample]) -> list[tuple[str, Sample]]:
        batch = list(samples)
        out = [(self._topics[s.tag], s) for s in batch if s.tag in self._raw]
        for f in self._filters:
            out.extend((self._topics[s.tag], s) for s in f.push(batch))
        return self._record(out)

    def flush(self, now: float) -> list[tuple[str, Sample]]:
        out: list[tuple[str, Sample]] = []
        for f in self._filters:
            out.extend((self._topics[s.tag], s) for s in f.flush(now))
        return self._record(out)

    def _record(self, out: list[tuple[str, Sample]]) -> list[tuple[str, Sample]]:
        if self._recorder is not None and out:
            for recipient, (labels, names) in self._readers.items():
                times = [s.timestamp for _, s in out if s.tag in names]
                if times:
                    self._recorder.shared(recipient, "mqtt", labels, times, max(times))
        return out
