"""Map a site config's parties, tags and ``sharing:`` section onto the governance components."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from symtwin.governance.policy import (
    Party,
    PolicyIssue,
    Resolution,
    SharingPolicy,
    SharingRule,
    TagGroup,
    TagInfo,
    build_policy,
    validate_policy,
)
from symtwin.units import parse_quantity


def _parts(cfg: Any, tags: Sequence[TagInfo]) -> tuple[list[Party], list[TagInfo], list[TagGroup], list[SharingRule]]:
    parties = [Party(p.id, p.name) for p in cfg.parties]
    groups = [TagGroup(g.id, tuple(g.tags)) for g in cfg.sharing.groups]
    rules = []
    for r in cfg.sharing.rules:
        res = r.resolution
        if res == "raw":
            resolution = Resolution.raw()
        elif res == "none":
            resolution = Resolution.none()
        else:
            resolution = Resolution.aggregated(parse_quantity(res.aggregated, "s"))
        rules.append(SharingRule(r.group, r.recipient, resolution))
    return parties, list(tags), groups, rules


def policy_issues(cfg: Any) -> list[PolicyIssue]:
    """Every sharing-policy problem of a schema-valid config, with config paths (the loader adds lines)."""
    tags = [TagInfo(t.id, t.owner, t.quantity, "") for t in cfg.tags]
    return validate_policy(*_parts(cfg, tags))


def policy_from_site(site: Any) -> SharingPolicy:
    """The validated :class:`SharingPolicy` of a loaded site (``symtwin.config.LoadedSite``)."""
    tags = [TagInfo(t.id, t.owner, t.quantity, t.si_unit) for t in site.tags.values()]
    return build_policy(*_parts(site.config, tags))
