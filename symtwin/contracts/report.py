"""Settlement reports: one per party (HTML with plots + CSV), each filtered by the sharing policy, and a
park summary.

What a party's report holds:

- its own figures (stand-alone and operating cost, payments, allocated saving, Shapley reference,
  CO2 and fuel avoided);
- the settlement of every contract it is a party to (both sides of a contract see its bill);
- park totals (total saving, CO2 avoided, energy exchanged), which reveal no single party's data;
- time series only as :meth:`SharingPolicy.filter_for` lets them through for that party (raw,
  aggregates, or nothing).

It never holds another party's own costs or any series the policy withholds. The park summary adds
each party's allocated saving, Shapley reference and CO2 avoided (the outcome the parties share) and
every contract's bill, but no party's stand-alone or operating cost.

Plots are PNGs embedded in the HTML (a report opens with no network); matplotlib runs headless (Agg).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import html
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from adapters.base import Sample
from symtwin.contracts.settlement import ExchangeSettlement, ParkSettlement, PartyResult
from symtwin.governance.audit import AuditLog
from symtwin.governance.policy import SharingPolicy, parse_interval, split_output_name

__all__ = ["ReportFiles", "write_reports"]

log = logging.getLogger(__name__)

MAX_PLOTTED_TAGS = 12


@dataclass(frozen=True)
class ReportFiles:
    parties: dict[str, tuple[Path, ...]]  # party → (html, settlement csv, series csv)
    park: tuple[Path, ...]  # (html, csv)


def _utc(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M")


def _eur(x: float) -> str:
    return f"{x:,.0f} €"


def _png(fig: object) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buf = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buf)  # type: ignore[arg-type]
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _series_plot(samples: Sequence[Sample]) -> str | None:
    """One panel per tag: raw as a line; aggregates as the mean with the min–max band."""
    from matplotlib.figure import Figure

    by_tag: dict[str, dict[str, list[tuple[float, float]]]] = {}
    interval: dict[str, float] = {}
    for s in samples:
        tag, stat, label = split_output_name(s.tag)
        by_tag.setdefault(tag, {}).setdefault(stat or "raw", []).append((s.timestamp, s.value))
        if label:
            interval[tag] = parse_interval(label)
    tags = sorted(by_tag)[:MAX_PLOTTED_TAGS]
    if not tags:
        return None
    height = 0.6 + 1.9 * len(tags)
    # fixed margins: constrained layout would double the rendering time
    fig = Figure(figsize=(9, height))
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.5 / height, top=1 - 0.35 / height, hspace=0.45)
    axes = fig.subplots(len(tags), 1, squeeze=False, sharex=True)[:, 0]

    def utc(ts: Iterable[float]) -> list[dt.datetime]:
        return [dt.datetime.fromtimestamp(t, dt.UTC) for t in ts]

    for ax, tag in zip(axes, tags, strict=True):
        stats = by_tag[tag]
        if "raw" in stats:
            pts = sorted(stats["raw"])
            ax.plot(utc(t for t, _ in pts), [v for _, v in pts], lw=0.8)
        if "mean" in stats:
            # an aggregate is stamped with its interval's end: draw it over the whole interval
            mean = dict(stats["mean"])
            lo, hi = dict(stats.get("min", [])), dict(stats.get("max", []))
            ends = sorted(mean)
            x = utc([ends[0] - interval[tag], *ends])
            ax.stairs([mean[t] for t in ends], x, baseline=None, lw=0.9, label="mean")
            if lo and hi:
                ax.stairs(
                    [hi.get(t, mean[t]) for t in ends],
                    x,
                    baseline=[lo.get(t, mean[t]) for t in ends],
                    fill=True,
                    alpha=0.25,
                    label="min–max",
                )
            ax.legend(fontsize=7, loc="upper right")
        ax.set_title(tag, fontsize=9, loc="left")
        ax.grid(alpha=0.3)
    return _png(fig)


def _bar_plot(title: str, labels: Sequence[str], groups: dict[str, Sequence[float]], ylabel: str) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.2))
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.12, top=0.9)
    ax = fig.subplots()
    width = 0.8 / max(len(groups), 1)
    for k, (name, values) in enumerate(groups.items()):
        ax.bar([i + k * width for i in range(len(labels))], values, width=width, label=name)
    ax.set_xticks([i + width * (len(groups) - 1) / 2 for i in range(len(labels))], labels)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.axhline(0, color="black", lw=0.6)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.note{color:#555;font-size:.9em}
img{max-width:100%}"""


def _table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def _exchange_rows(items: Sequence[ExchangeSettlement]) -> list[list[object]]:
    return [
        [
            s.contract,
            s.exchange,
            f"{s.supplier} → {s.receiver}",
            f"{_utc(s.start)} – {_utc(s.end)}",
            f"{s.delivered_mwh:,.1f}",
            f"{s.avg_price_eur_per_mwh:,.2f}",
            _eur(s.energy_payment_eur),
            _eur(s.penalty_eur),
            _eur(s.total_eur),
            "; ".join(s.notes),
        ]
        for s in items
    ]


_EXCHANGE_HEADER = (
    "contract",
    "exchange",
    "supplier → receiver",
    "period (UTC)",
    "delivered [MWh]",
    "avg price [€/MWh]",
    "energy payment",
    "take-or-pay",
    "total due",
    "notes",
)


def _totals_rows(park: ParkSettlement) -> list[list[object]]:
    return [
        ["total saving of the park", _eur(park.total_savings_eur)],
        ["CO2 avoided", f"{park.co2_avoided_t:,.1f} t"],
        ["fuel avoided", f"{park.fuel_avoided_mwh:,.1f} MWh"],
        ["energy exchanged", f"{park.delivered_mwh:,.1f} MWh"],
    ]


def _party_csv(path: Path, park: ParkSettlement, me: PartyResult, mine: Sequence[ExchangeSettlement]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["section", "item", "contract", "value", "unit"])
        for item, value in (
            ("standalone_cost", me.standalone_cost_eur),
            ("operating_cost", me.operating_cost_eur),
            ("paid", me.paid_eur),
            ("received", me.received_eur),
            ("net_cost", me.net_cost_eur),
            ("savings_allocated", me.savings_eur),
            ("shapley_reference", me.shapley_eur),
        ):
            w.writerow(["party", item, "", f"{value:.2f}", "EUR"])
        w.writerow(["party", "co2_avoided", "", f"{me.co2_avoided_t:.3f}", "t"])
        w.writerow(["party", "fuel_avoided", "", f"{me.fuel_avoided_mwh:.3f}", "MWh"])
        for s in mine:
            w.writerow(["contract", "delivered", s.contract, f"{s.delivered_mwh:.3f}", "MWh"])
            w.writerow(["contract", "energy_payment", s.contract, f"{s.energy_payment_eur:.2f}", "EUR"])
            w.writerow(["contract", "take_or_pay", s.contract, f"{s.penalty_eur:.2f}", "EUR"])
            w.writerow(["contract", "total_due", s.contract, f"{s.total_eur:.2f}", "EUR"])
        w.writerow(["park", "total_savings", "", f"{park.total_savings_eur:.2f}", "EUR"])
        w.writerow(["park", "co2_avoided", "", f"{park.co2_avoided_t:.3f}", "t"])
        w.writerow(["park", "energy_exchanged", "", f"{park.delivered_mwh:.3f}", "MWh"])


def _series_csv(path: Path, samples: Sequence[Sample]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "time_utc", "timestamp_s", "value"])
        for s in sorted(samples, key=lambda s: (s.tag, s.timestamp)):
            w.writerow([s.tag, _utc(s.timestamp), f"{s.timestamp:.3f}", repr(s.value)])


def write_reports(
    park: ParkSettlement,
    policy: SharingPolicy,
    series: Sequence[Sample],
    out_dir: Path,
    *,
    site_name: str = "",
    audit: AuditLog | None = None,
    notes: Mapping[str, Sequence[str]] | None = None,
) -> ReportFiles:
    """Write ``<out>/<party>/report.html``, ``settlement.csv``, ``series.csv`` and ``<out>/park/summary.*``.

    series: history samples to show (any tags); each party's copy goes through the policy first.
    audit: if given, each report is recorded as a share (recipient, tags with resolution, period).
    notes: per party, how its counterfactual was built (notional units, units left out); shown in that
    party's report only, since they name its plant.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    in_period = [s for s in series if park.start <= s.timestamp < park.end]
    title_site = f"{site_name} — " if site_name else ""
    files: dict[str, tuple[Path, ...]] = {}
    for me in park.parties:
        party = me.party
        folder = out_dir / party
        folder.mkdir(exist_ok=True)
        visible = policy.filter_for(party, in_period, until=park.end)
        mine = [s for s in park.exchanges if party in (s.supplier, s.receiver)]
        parts = [
            f"<p>Settlement period {html.escape(park.label)}: {_utc(park.start)} – {_utc(park.end)} UTC. "
            f"Figures for <b>{html.escape(party)}</b>; data of other parties only as the sharing policy allows.</p>",
            "<h2>Your result</h2>",
            _table(
                ("item", "value"),
                [
                    ["stand-alone cost (own boilers, baseline control)", _eur(me.standalone_cost_eur)],
                    [
                        "operating cost in the symbiosis (without contract payments)",
                        _eur(me.operating_cost_eur),
                    ],
                    ["paid under contracts", _eur(me.paid_eur)],
                    ["received under contracts", _eur(me.received_eur)],
                    ["net cost", _eur(me.net_cost_eur)],
                    ["saving allocated by the contracts", _eur(me.savings_eur)],
                    ["Shapley value (fairness reference)", _eur(me.shapley_eur)],
                    ["CO2 avoided", f"{me.co2_avoided_t:,.1f} t"],
                    ["fuel avoided", f"{me.fuel_avoided_mwh:,.1f} MWh"],
                ],
            ),
            '<img alt="cost comparison" src="'
            + _bar_plot(
                "Cost: stand-alone vs in the symbiosis",
                ["stand-alone", "symbiosis (net)"],
                {party: [me.standalone_cost_eur, me.net_cost_eur]},
                "€",
            )
            + '">',
            *(
                [
                    '<p class="note">Stand-alone park: '
                    + "; ".join(html.escape(n) for n in (notes or {}).get(party, ()))
                    + ".</p>"
                ]
                if (notes or {}).get(party)
                else []
            ),
            "<h2>Your contracts</h2>",
            _table(_EXCHANGE_HEADER, _exchange_rows(mine)) if mine else "<p>No contract in this period.</p>",
            "<h2>Park</h2>",
            _table(("item", "value"), _totals_rows(park)),
            f'<p class="note">Shapley reference: {html.escape(park.shapley_basis)}.</p>',
            "<h2>Series: yours, and what others share with you</h2>",
        ]
        plot = _series_plot(visible)
        if plot:
            parts.append(f'<img alt="shared series" src="{plot}">')
            names = sorted({split_output_name(s.tag)[0] for s in visible})
            if len(names) > MAX_PLOTTED_TAGS:
                parts.append(f'<p class="note">{len(names) - MAX_PLOTTED_TAGS} more tags in series.csv.</p>')
        else:
            parts.append("<p>No series in this period.</p>")
        html_path = folder / "report.html"
        html_path.write_text(
            _page(f"{title_site}settlement {park.label}: {party}", "".join(parts)), encoding="utf-8"
        )
        csv_path = folder / "settlement.csv"
        _party_csv(csv_path, park, me, mine)
        series_path = folder / "series.csv"
        _series_csv(series_path, visible)
        files[party] = (html_path, csv_path, series_path)
        if audit is not None:
            shared = {}
            for v in visible:
                tag = split_output_name(v.tag)[0]
                if policy.owner_of(tag) != party:
                    shared[tag] = policy.resolution(tag, party).label
            audit.append(
                recipient=party,
                channel="report",
                tags=shared,
                start=park.start,
                end=park.end,
                note=f"settlement {park.label}",
            )

    park_dir = out_dir / "park"
    park_dir.mkdir(exist_ok=True)
    labels = [p.party for p in park.parties]
    body = "".join(
        [
            f"<p>Settlement period {html.escape(park.label)}: {_utc(park.start)} – {_utc(park.end)} UTC.</p>",
            "<h2>Value of the symbiosis</h2>",
            _table(("item", "value"), _totals_rows(park)),
            "<h2>Allocation of the saving</h2>",
            _table(
                ("party", "allocated by contracts", "Shapley reference", "difference", "CO2 avoided [t]"),
                [
                    [
                        p.party,
                        _eur(p.savings_eur),
                        _eur(p.shapley_eur),
                        _eur(p.savings_eur - p.shapley_eur),
                        f"{p.co2_avoided_t:,.1f}",
                    ]
                    for p in park.parties
                ],
            ),
            '<img alt="allocation" src="'
            + _bar_plot(
                "Saving per party",
                labels,
                {
                    "contracts": [p.savings_eur for p in park.parties],
                    "Shapley": [p.shapley_eur for p in park.parties],
                },
                "€",
            )
            + '">',
            f'<p class="note">Shapley reference: {html.escape(park.shapley_basis)}.</p>',
            "<h2>Contracts</h2>",
            _table(_EXCHANGE_HEADER, _exchange_rows(park.exchanges)),
        ]
    )
    park_html = park_dir / "summary.html"
    park_html.write_text(_page(f"{title_site}park settlement {park.label}", body), encoding="utf-8")
    park_csv = park_dir / "summary.csv"
    with park_csv.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["section", "item", "key", "value", "unit"])
        w.writerow(["park", "total_savings", "", f"{park.total_savings_eur:.2f}", "EUR"])
        w.writerow(["park", "co2_avoided", "", f"{park.co2_avoided_t:.3f}", "t"])
        w.writerow(["park", "fuel_avoided", "", f"{park.fuel_avoided_mwh:.3f}", "MWh"])
        w.writerow(["park", "energy_exchanged", "", f"{park.delivered_mwh:.3f}", "MWh"])
        for p in park.parties:
            w.writerow(["party", "savings_allocated", p.party, f"{p.savings_eur:.2f}", "EUR"])
            w.writerow(["party", "shapley_reference", p.party, f"{p.shapley_eur:.2f}", "EUR"])
            w.writerow(["party", "co2_avoided", p.party, f"{p.co2_avoided_t:.3f}", "t"])
        for x in park.exchanges:
            w.writerow(["contract", "delivered", x.contract, f"{x.delivered_mwh:.3f}", "MWh"])
            w.writerow(["contract", "total_due", x.contract, f"{x.total_eur:.2f}", "EUR"])
    log.info("wrote settlement reports for %d parties to %s", len(files), out_dir)
    return ReportFiles(files, (park_html, park_csv))
