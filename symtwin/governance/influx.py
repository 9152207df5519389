"""InfluxDB 2 bucket and scoped-token plan generated from the sharing policy.

Buckets:

``<prefix>-<party>``
    the party's own data at full resolution; only the party's token reads or writes it.
``<prefix>-<owner>-to-<recipient>``
    what ``owner`` shares with ``recipient``, already filtered by the enforcement layer (raw
    values, or only the aggregates); written by the owner's service, read by the recipient (and the
    owner, to check what it shared). One bucket per pair keeps every bucket single-writer, so a
    token's scope says exactly who sees what.

One token per party: read+write on its own bucket, write on each ``<self>-to-<other>`` bucket,
read on each ``<self>-to-<other>`` and ``<other>-to-<self>`` bucket. Nothing else.

:func:`plan_influx` returns the plan; :meth:`InfluxPlan.to_json` and :meth:`InfluxPlan.shell_script`
render it (the script drives the ``influx`` CLI; tokens land in 0600 files, never on stdout).
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import asdict, dataclass

from symtwin.governance.mosquitto import GovernanceConfigError
from symtwin.governance.policy import SharingPolicy, split_output_name

__all__ = [
    "Bucket",
    "InfluxPlan",
    "Permission",
    "TokenPlan",
    "bucket_for",
    "plan_influx",
    "private_bucket",
    "share_bucket",
]

_BUCKET_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def private_bucket(party: str, prefix: str = "symtwin") -> str:
    return f"{prefix}-{party}"


def share_bucket(owner: str, recipient: str, prefix: str = "symtwin") -> str:
    return f"{prefix}-{owner}-to-{recipient}"


def bucket_for(policy: SharingPolicy, recipient: str, output_name: str, prefix: str = "symtwin") -> str:
    """Bucket an enforced output (``tag`` or ``tag:mean_15min``) for ``recipient`` is written to."""
    tag, _, _ = split_output_name(output_name)
    owner = policy.owner_of(tag)
    return private_bucket(owner, prefix) if owner == recipient else share_bucket(owner, recipient, prefix)


@dataclass(frozen=True)
class Bucket:
    name: str
    owner: str
    recipient: str | None  # None: the owner's private bucket
    description: str


@dataclass(frozen=True)
class Permission:
    action: str  # "read" | "write"
    bucket: str


@dataclass(frozen=True)
class TokenPlan:
    party: str
    description: str
    permissions: tuple[Permission, ...]


@dataclass(frozen=True)
class InfluxPlan:
    org: str
    retention: str
    buckets: tuple[Bucket, ...]
    tokens: tuple[TokenPlan, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def shell_script(self) -> str:
        """A bash script that creates the buckets (if missing) and one scoped token per party."""
        q = shlex.quote
        out = [
            "#!/usr/bin/env bash",
            "# symtwin: generated from the site's sharing policy; regenerate instead of editing.",
            "# Needs the influx CLI (2.x) configured with an admin token (INFLUX_HOST, INFLUX_TOKEN or",
            "# `influx config`). Each party's token is written to $TOKENS_DIR/<party>.json (mode 0600).",
            "set -euo pipefail",
            f"ORG=${{INFLUX_ORG:-{q(self.org)}}}",
            "TOKENS_DIR=${TOKENS_DIR:-./influx-tokens}",
            "umask 077",
            'mkdir -p "$TOKENS_DIR"',
            "",
            "bucket_id() {",
            '  influx bucket list --org "$ORG" --name "$1" --hide-headers 2>/dev/null | awk \'NR==1 {print $1}\'',
            "}",
            "ensure_bucket() {",
            '  if [ -z "$(bucket_id "$1")" ]; then',
            f'    influx bucket create --org "$ORG" --name "$1" --retention {q(self.retention)} --description "$2" >/dev/null',
            "  fi",
            "}",
            "",
        ]
        for b in self.buckets:
            out.append(f"ensure_bucket {q(b.name)} {q(b.description)}")
        out.append("")
        for t in self.tokens:
            flags = " ".join(f'--{p.action}-bucket "$(bucket_id {q(p.bucket)})"' for p in t.permissions)
            out.append(
                f'influx auth create --org "$ORG" --description {q(t.description)} {flags} --json '
                f'> "$TOKENS_DIR"/{q(t.party + ".json")}'
            )
        out.append('echo "buckets and tokens created; tokens are in $TOKENS_DIR"')
        return "\n".join(out) + "\n"


def plan_influx(
    policy: SharingPolicy, *, org: str = "symtwin", prefix: str = "symtwin", retention: str = "0"
) -> InfluxPlan:
    """Buckets and scoped tokens for ``policy``; raises if two generated names collide or are invalid."""
    buckets: list[Bucket] = []
    reads: dict[str, list[str]] = {p: [] for p in policy.party_ids}
    writes: dict[str, list[str]] = {p: [] for p in policy.party_ids}
    for party in policy.party_ids:
        name = private_bucket(party, prefix)
        buckets.append(Bucket(name, party, None, f"{party}: own data, full resolution"))
        reads[party].append(name)
        writes[party].append(name)
    for owner in policy.party_ids:
        for recipient, grants in policy.shared_by(owner).items():
            name = share_bucket(owner, recipient, prefix)
            summary = ", ".join(sorted({r.label for r in grants.values()}))
            buckets.append(
                Bucket(name, owner, recipient, f"{owner} -> {recipient}: {len(grants)} tags ({summary})")
            )
            writes[owner].append(name)
            reads[owner].append(name)
            reads[recipient].append(name)
    names = [b.name for b in buckets]
    for n in names:
        if not _BUCKET_OK.match(n):
            raise GovernanceConfigError(f"bucket name {n!r} is not valid; rename the party")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise GovernanceConfigError(f"party ids give colliding bucket names {dup}; rename the parties")
    tokens = tuple(
        TokenPlan(
            party,
            f"symtwin {party}: scoped by the sharing policy",
            tuple(Permission("read", b) for b in reads[party])
            + tuple(Permission("write", b) for b in writes[party]),
        )
        for party in policy.party_ids
    )
    return InfluxPlan(org, retention, tuple(buckets), tokens)
