"""The campaign report: one self-contained offline ``report.html`` beside ``figures/``.

:func:`build_report` reads only the run-folder contract (docs/architecture.md), so a report
can be rebuilt at any time, also while a campaign is still running. Optional inputs that are
missing (no baselines, no iterations yet, no ``unseen.npz``) skip their figure with a note in
the HTML instead of failing. Run folders with replica statistics (``ea_error_signed_eV``,
``ea_error_ci95_eV``, ``replicas.npz``, the ``stop`` and ``resolution`` blocks) get interval
bars, replica bands and a one-sentence verdict; older folders still get every figure. The
HTML embeds every PNG as a base64 data URI and uses inline CSS only, so the single file works
offline and can be mailed around.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

from rarelearn import __version__
from rarelearn.pulls import bond_counts_text
from rarelearn.report.campaign_figures import FIGURES, STYLE, FigureResult
from rarelearn.report.run_folder import (
    Run,
    ci95_kcal_mol,
    load_run,
    lower_bound,
    num,
    reference_stats,
    signed_error_kcal_mol,
    tolerance_kcal_mol,
)
from rarelearn.report.tables import final_line, unvalidated_line, validated
from rarelearn.runfolder import ROW_KEYS
from rarelearn.units import EV_TO_KCAL_MOL

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: right; }
th { background: #f2f2f2; } td.name, th.name { text-align: left; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.9em; color: #444; max-width: 800px; }
.skipped { color: #8a5a00; background: #fff6e0; padding: 0.4em 0.8em; border-radius: 4px; }
.scroll { overflow-x: auto; } pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
.muted { color: #666; font-size: 0.9em; }
.headline { font-size: 1.1em; font-weight: 600; }
"""


def _fmt(value: Any) -> str:
    """A table cell: integers as-is, floats to 4 significant digits, missing as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.4g}"
    if isinstance(value, list) and all(
        v is None or isinstance(v, bool | int | float | str) for v in value
    ):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, dict | list):
        return html.escape(json.dumps(value))
    return html.escape(str(value))


def _table(rows: Sequence[dict[str, Any]], first: Sequence[str], name_key: str | None) -> str:
    """HTML table: ``first`` columns in order, then any other scalar keys the rows carry."""
    columns = list(first)
    for row in rows:
        for key, value in row.items():
            if key not in columns and not isinstance(value, dict | list):
                columns.append(key)
    head = "".join(
        f'<th class="name">{html.escape(c)}</th>' if c == name_key else f"<th>{html.escape(c)}</th>"
        for c in columns
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="name">{_fmt(row.get(c))}</td>'
            if c == name_key
            else f"<td>{_fmt(row.get(c))}</td>"
            for c in columns
        )
        body.append(f"<tr>{cells}</tr>")
    return (
        f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _display_row(row: dict[str, Any]) -> dict[str, Any]:
    """An iteration row for the table; the per-replica ``broke`` list as a count "k/R" and
    the bonds the pulls broke as "S1-S2 15/16"."""
    shown = dict(row)
    broke = row.get("broke")
    if isinstance(broke, list) and broke:
        shown["pulls_broke"] = f"{sum(bool(b) for b in broke)}/{len(broke)}"
    if isinstance(row.get("broken_bonds_nnp"), dict):
        shown["bonds_broken"] = bond_counts_text(row["broken_bonds_nnp"])
    return shown


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _unvalidated_headline(run: Run, last: dict[str, Any]) -> list[str]:
    """A campaign without reference pulls: that first, then its Ea and how it stopped."""
    sentences = [unvalidated_line(run.summary) + "."]
    ea, sem = num(last.get("ea_nnp_eV")), num(last.get("ea_nnp_sem_eV"))
    text = f"Final NNP Ea {ea:.3f} eV"
    if math.isfinite(sem):
        text += f" ± {sem:.3f} (mean ± standard error of {last.get('n_replicas')} pulls)"
    reason = run.summary.get("stop_reason")
    if reason == "self-consistent":
        text += f", self-consistent from iteration {run.summary.get('converged_iteration')}"
    elif reason:
        text += f", stopped: {reason}"
    labels = num(last.get("n_labels"))
    if math.isfinite(labels):
        text += f", after {int(labels)} labels"
    return [*sentences, text + "."]


def _headline(run: Run) -> list[str]:
    """The verdict at the top of the report: final Ea error, convergence, labels; resolution.

    Plain-text sentences (escaped by the caller); empty while there are no iterations.
    """
    if not run.rows:
        return []
    last = run.rows[-1]
    if not validated(run.summary):
        return _unvalidated_headline(run, last)
    error = signed_error_kcal_mol(last, run.ea_ref_eV)
    ci95 = ci95_kcal_mol(last)
    if not math.isfinite(error):
        text = "Final Ea error not available"
    elif math.isfinite(ci95):
        text = f"Final Ea error {error:+.2f} ± {ci95:.2f} kcal/mol (95 %)"
    else:
        text = f"Final Ea error {error:+.2f} kcal/mol (no confidence interval)"
    converged = num(run.summary.get("converged_iteration"))
    reason = run.summary.get("stop_reason")
    if math.isfinite(converged):
        text += f", converged at iteration {int(converged)}"
    elif reason == "converged":
        text += ", converged"
    elif reason == "running":
        text += ", not converged yet (campaign still running)"
    elif reason:
        text += f", not converged ({reason})"
    else:
        text += ", not converged (no stop reason recorded)"
    labels = num(last.get("n_labels"))
    if math.isfinite(labels):
        text += f", after {int(labels)} labels"
    sentences = [text + "."]
    resolution = run.summary.get("resolution")
    if isinstance(resolution, dict) and resolution.get("resolvable") is False:
        half = num(resolution.get("ci95_kcal_mol"))
        half = half if math.isfinite(half) else ci95
        tolerance = num(resolution.get("tolerance_kcal_mol"))
        tolerance = tolerance if math.isfinite(tolerance) else tolerance_kcal_mol(run)
        needed = num(resolution.get("replicas_needed"))
        if math.isfinite(half):
            sentence = (
                f"The 95 % interval (±{half:.2f} kcal/mol) is wider than the ±{tolerance:g} "
                "kcal/mol tolerance"
            )
        else:
            sentence = (
                "There is no 95 % interval (one replica per side), so the "
                f"±{tolerance:g} kcal/mol tolerance cannot be resolved"
            )
        if math.isfinite(needed):
            sentence += f": about {int(needed)} replicas per side would resolve it"
        sentences.append(sentence + ".")
    final = final_line(run.summary)
    if final is not None:
        sentences.append(final + ".")
    return sentences


def _overview(run: Run) -> str:
    items = [("run folder", html.escape(str(run.run_dir.resolve())))]
    system = run.summary.get("system")
    if isinstance(system, dict):
        items.append(("molecule", html.escape(f"{system['formula']} ({system['n_atoms']} atoms)")))
        items.append(("pulled", html.escape(" ↔ ".join(system["pulled"]))))
    model = run.summary.get("model")
    if isinstance(model, dict):
        committee = f"{model.get('n_members')} {model.get('backend')} members"
        items.append(("committee", html.escape(committee)))
    if isinstance(run.summary.get("broken_bonds_ref"), dict):
        items.append(
            (
                "bond broken (reference pulls)",
                html.escape(bond_counts_text(run.summary["broken_bonds_ref"])),
            )
        )
    if run.rows and isinstance(run.rows[-1].get("broken_bonds_nnp"), dict):
        items.append(
            (
                f"bond broken (NNP pulls, iteration {_fmt(run.rows[-1].get('iteration'))})",
                html.escape(bond_counts_text(run.rows[-1]["broken_bonds_nnp"])),
            )
        )
    ea_ref, sem, n_ref = reference_stats(run)
    if math.isfinite(ea_ref):
        value = f"{ea_ref:.4f} eV ({ea_ref * EV_TO_KCAL_MOL:.2f} kcal/mol)"
        if n_ref and math.isfinite(sem):
            value = (
                f"{ea_ref:.4f} ± {sem:.4f} eV "
                f"({ea_ref * EV_TO_KCAL_MOL:.2f} ± {sem * EV_TO_KCAL_MOL:.2f} kcal/mol), "
                f"mean ± sem of {n_ref} replicas"
            )
        elif n_ref:
            value += f", mean of {n_ref} replica{'s' if n_ref != 1 else ''}"
        items.append(("reference E<sub>a</sub>", value))
    if run.reference:
        for key, value in run.reference.items():
            if key != "ea_ref_eV" and not isinstance(value, dict | list):
                items.append((html.escape(f"reference: {key}"), _fmt(value)))
    items.append(("iterations", str(len(run.rows))))
    if run.rows:
        last = run.rows[-1]
        error = signed_error_kcal_mol(last, run.ea_ref_eV)
        ci95 = ci95_kcal_mol(last)
        if math.isfinite(error):
            value = f"{error:+.3f} kcal/mol ({error / EV_TO_KCAL_MOL:+.4f} eV)"
            if math.isfinite(ci95):
                value = (
                    f"{error:+.3f} ± {ci95:.3f} kcal/mol (95 %) "
                    f"({error / EV_TO_KCAL_MOL:+.4f} ± {ci95 / EV_TO_KCAL_MOL:.4f} eV)"
                )
            name = f"E<sub>a</sub> error (NNP − reference), iteration {_fmt(last.get('iteration'))}"
            items.append((name, value))
        single = num(last.get("ea_error_single_eV"))
        if math.isfinite(single):
            items.append(
                (
                    "single-pull |E<sub>a</sub> error| (replica 0)",
                    f"{abs(single) * EV_TO_KCAL_MOL:.3f} kcal/mol",
                )
            )
        replicas = last.get("n_replicas")
        if replicas is not None:
            items.append(("NNP replicas per iteration", _fmt(replicas)))
        if lower_bound(last):
            broke = last.get("broke")
            n_broke = sum(bool(b) for b in broke) if isinstance(broke, list) else 0
            total = len(broke) if isinstance(broke, list) else 1
            items.append(
                ("NNP pulls that broke", f"{n_broke} of {total}: E<sub>a</sub> is a lower bound")
            )
        n_labels = last.get("n_labels")
        if n_labels is not None:
            items.append(("labels used", _fmt(n_labels)))
    stop = run.summary.get("stop")
    if isinstance(stop, dict):
        items.append(
            (
                "stop rule",
                f"tolerance ±{_fmt(stop.get('tolerance_kcal_mol'))} kcal/mol, "
                f"patience {_fmt(stop.get('patience'))}",
            )
        )
    if run.summary.get("stop_reason") is not None:
        items.append(("stop reason", _fmt(run.summary.get("stop_reason"))))
    if "converged_iteration" in run.summary:
        items.append(("converged at iteration", _fmt(run.summary.get("converged_iteration"))))
    resolution = run.summary.get("resolution")
    if isinstance(resolution, dict):
        items.append(
            (
                "resolution",
                f"95 % half-width {_fmt(num(resolution.get('ci95_kcal_mol')))} kcal/mol; "
                f"{_fmt(resolution.get('replicas_needed'))} replicas per side needed; "
                f"resolvable: {_fmt(resolution.get('resolvable'))}",
            )
        )
    rows = "".join(f'<tr><th class="name">{k}</th><td class="name">{v}</td></tr>' for k, v in items)
    return f"<table>{rows}</table>"


def _render_html(run: Run, figures: Sequence[FigureResult]) -> str:
    title = f"rarelearn report: {run.run_dir.resolve().name}"
    headline = " ".join(_headline(run))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="headline">{html.escape(headline)}</p>' if headline else "",
        f'<p class="muted">Generated by rarelearn {html.escape(__version__)} from the run '
        "folder; self-contained, works offline.</p>",
        "<h2>Overview</h2>",
        _overview(run),
        "<h2>Figures</h2>",
    ]
    for fig in figures:
        if fig.path is not None:
            parts.append(
                f'<figure id="{html.escape(fig.name)}"><h3>{html.escape(fig.title)}</h3>'
                f'<img src="{_data_uri(fig.path)}" alt="{html.escape(fig.title)}">'
                f"<figcaption>{html.escape(fig.caption)} "
                f"(<code>figures/{html.escape(fig.name)}</code>)</figcaption></figure>"
            )
        else:
            parts.append(
                f"<h3>{html.escape(fig.title)}</h3>"
                f'<p class="skipped">Figure skipped: {html.escape(fig.skipped or "")}</p>'
            )
    parts.append("<h2>Iterations</h2>")
    if run.rows:
        parts.append(_table([_display_row(r) for r in run.rows], ROW_KEYS, None))
    else:
        parts.append('<p class="skipped">No iterations yet.</p>')
    parts.append("<h2>Baselines</h2>")
    if run.baselines:
        baseline_rows = [{"name": name, **row} for name, row in run.baselines.items()]
        first = ["name", *[k for k in ROW_KEYS if k != "iteration"]]
        parts.append(_table(baseline_rows, first, "name"))
    else:
        parts.append('<p class="skipped">No baselines in this run.</p>')
    if run.notes:
        parts.append("<h2>Notes</h2><ul>")
        parts.extend(f"<li>{html.escape(note)}</li>" for note in run.notes)
        parts.append("</ul>")
    config = run.summary.get("config")
    if config:
        parts.append("<h2>Configuration</h2><details><summary>settings used</summary><pre>")
        parts.append(html.escape(json.dumps(config, indent=2, default=str)))
        parts.append("</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def build_report(run_dir: Path | str) -> Path:
    """Write ``figures/*.png`` and a self-contained ``report.html`` for a run folder.

    Reads summary.json (required), reference/, iterations/NNN/ and baselines/<name>/ per the
    run-folder contract. Figures whose inputs are missing are skipped and the HTML says why;
    a stale PNG of a skipped figure is removed so the folder matches the report. Returns the
    path of ``report.html``. Raises RarelearnError if the folder or summary.json is missing.
    """
    with matplotlib.rc_context(STYLE):
        run = load_run(run_dir)
        fig_dir = run.run_dir / "figures"
        fig_dir.mkdir(parents=True, exist_ok=True)
        figures = [make(run, fig_dir) for make in FIGURES]
    for fig in figures:
        if fig.path is None:
            (fig_dir / fig.name).unlink(missing_ok=True)
    out = run.run_dir / "report.html"
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(_render_html(run, figures), encoding="utf-8")
    os.replace(tmp, out)
    return out
