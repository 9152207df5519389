"""Generate broker and database config from the site's sharing policy (mosquitto, InfluxDB), or show it.

symtwin governance mosquitto CONFIG --out DIR   mosquitto.conf, acl, passwd (hashed), mqtt-passwords.env
symtwin governance influx CONFIG [--out DIR]    influx-plan.json and influx-setup.sh
symtwin governance show CONFIG [--party P]      what each party sees, tag by tag
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from symtwin.commands._common import add_config_argument, load_or_exit
from symtwin.config import EXIT_CONFIG_ERROR, LoadedSite
from symtwin.governance.from_site import policy_from_site
from symtwin.governance.policy import PolicyError, SharingPolicy


def load_policy_or_exit(site: LoadedSite) -> SharingPolicy:
    try:
        return policy_from_site(site)
    except PolicyError as exc:
        for issue in exc.issues:
            where = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in issue.path).replace(
                ".[", "["
            )
            print(f"{site.path}: {where}: {issue.message}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = (__doc__ or "").split("\n", 1)[1].strip()
    sub = parser.add_subparsers(dest="target", metavar="TARGET", required=True)
    m = sub.add_parser("mosquitto", help="mosquitto.conf, ACL and hashed password file for the park broker")
    add_config_argument(m)
    m.add_argument("--out", type=Path, required=True, help="folder to write into (created; files are 0600)")
    m.add_argument("--port", type=int, default=1883, help="listener port (default 1883)")
    m.add_argument("--bind", default="127.0.0.1", help="listener address, '' for all (default 127.0.0.1)")
    m.add_argument(
        "--files-dir",
        type=Path,
        default=None,
        help="where the files will be on the broker host (paths written into mosquitto.conf; default: --out)",
    )
    m.add_argument(
        "--run-as-user", default=None, help="mosquitto's 'user' option (it must be able to read the files)"
    )
    m.add_argument(
        "--tls",
        nargs=3,
        metavar=("CAFILE", "CERTFILE", "KEYFILE"),
        default=None,
        help="serve TLS with this CA bundle, server certificate and key (paths on the broker host)",
    )
    i = sub.add_parser("influx", help="InfluxDB bucket and scoped-token plan (JSON and an influx CLI script)")
    add_config_argument(i)
    i.add_argument("--out", type=Path, default=Path("."), help="folder to write into (default: current)")
    i.add_argument("--org", default="symtwin", help="InfluxDB organisation (default symtwin)")
    i.add_argument("--prefix", default="symtwin", help="bucket name prefix (default symtwin)")
    i.add_argument(
        "--retention", default="0", help="bucket retention for the influx CLI, e.g. 30d (default 0: forever)"
    )
    s = sub.add_parser("show", help="print what each party sees of each tag")
    add_config_argument(s)
    s.add_argument("--party", default=None, help="only this recipient")


def _show(policy: SharingPolicy, party: str | None) -> int:
    recipients = [party] if party else list(policy.party_ids)
    for p in recipients:
        if p not in policy.party_ids:
            print(f"unknown party {p!r}; parties: {', '.join(policy.party_ids)}", file=sys.stderr)
            return EXIT_CONFIG_ERROR
        print(f"{p} sees:")
        for tag, res in policy.grants(p).items():
            owner = policy.owner_of(tag)
            print(f"  {tag:<40} {'own' if owner == p else 'from ' + owner:<16} {res.label}")
    return 0


def run(args: argparse.Namespace) -> int:
    site = load_or_exit(args.config)
    policy = load_policy_or_exit(site)
    if args.target == "show":
        return _show(policy, args.party)
    if args.target == "mosquitto":
        from symtwin.governance.mosquitto import BrokerTls, GovernanceConfigError, write_broker_config

        tls = BrokerTls(Path(args.tls[0]), Path(args.tls[1]), Path(args.tls[2])) if args.tls else None

        try:
            files = write_broker_config(
                policy,
                args.out,
                port=args.port,
                bind_address=args.bind or None,
                files_dir=args.files_dir,
                run_as_user=args.run_as_user,
                environ=os.environ,
                tls=tls,
            )
        except GovernanceConfigError as exc:
            print(f"{args.config}: {exc}", file=sys.stderr)
            return EXIT_CONFIG_ERROR
        print(f"wrote {files.conf}, {files.acl}, {files.passwd}")
        if files.secrets is not None:
            print(
                f"generated passwords for {', '.join(files.generated_for)} in {files.secrets} (mode 0600); "
                "hand each party only its own line"
            )
        return 0
    from symtwin.governance.influx import plan_influx
    from symtwin.governance.mosquitto import GovernanceConfigError

    try:
        plan = plan_influx(policy, org=args.org, prefix=args.prefix, retention=args.retention)
    except GovernanceConfigError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "influx-plan.json").write_text(plan.to_json())
    script = args.out / "influx-setup.sh"
    script.write_text(plan.shell_script())
    script.chmod(0o755)
    print(
        f"wrote {args.out / 'influx-plan.json'} and {script}: {len(plan.buckets)} buckets, {len(plan.tokens)} tokens"
    )
    return 0
