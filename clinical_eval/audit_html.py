"""The audit as one self-contained HTML page: tables, inline PNG plots, highlighted worst cases.

No scripts, no external files: the page can be mailed, archived or opened offline. Plots are
matplotlib (Agg) PNGs embedded as base64.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from clinical_eval.audit import VALUE_NAMES, AuditReport
from clinical_eval.labeler import LabeledReport
from clinical_eval.lexicon import HEART_FAILURE
from clinical_eval.observations import OBSERVATIONS

_VALUE_TEXT = {1: "positive", 0: "negative", -1: "uncertain", None: "not mentioned"}
_MENTION_NAMES = {HEART_FAILURE: "Edema (heart failure)", "_OTHER": "other abnormality"}

_STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:0;color:#1d2733;
background:#f4f6f8}
main{max-width:1100px;margin:0 auto;padding:24px 32px 48px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:19px;border-bottom:2px solid #dde3ea;
padding-bottom:4px;margin-top:36px}
.sub{color:#5b6b7c;margin:0 0 18px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #dde3ea;border-radius:8px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:22px}.card span{color:#5b6b7c;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}
th,td{border-bottom:1px solid #e6eaef;padding:4px 10px;text-align:right}
th:first-child,td:first-child{text-align:left}
th{background:#f0f3f6}
img{max-width:100%}
.case{border:1px solid #dde3ea;border-radius:8px;padding:10px 16px;margin:14px 0}
.case h3{font-size:15px;margin:4px 0}
.texts{display:grid;grid-template-columns:1fr 1fr;gap:16px}
.texts pre{white-space:pre-wrap;font-family:inherit;font-size:13px;background:#fafbfc;
padding:8px;border-radius:6px;margin:4px 0}
mark.ok{background:#d7f0dd}mark.bad{background:#ffd2cc;outline:1px solid #e05a47}
.note{color:#5b6b7c;font-size:12px}
"""


def _png(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{encoded}">'


def _f1_plot(numbers: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axis = plt.subplots(figsize=(9, 5.2))
    rows = np.arange(len(OBSERVATIONS))
    for offset, (key, colour) in enumerate((("unc0", "#2f6db5"), ("unc1", "#e0913a"))):
        intervals = numbers["intervals"][key]
        values = np.array([intervals[name]["value"] for name in OBSERVATIONS])
        low = values - np.array([intervals[name]["low"] for name in OBSERVATIONS])
        high = np.array([intervals[name]["high"] for name in OBSERVATIONS]) - values
        axis.barh(
            rows + offset * 0.4 - 0.2,
            values,
            height=0.38,
            color=colour,
            xerr=[low, high],
            capsize=2,
            label=f"uncertain as {key[-1]}",
        )
    axis.set_yticks(rows, OBSERVATIONS)
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.set_xlabel("F1 (bars: 95% bootstrap interval)")
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    axis.grid(axis="x", alpha=0.3)
    return _png(figure)


def _confusion_plot(numbers: dict[str, Any]) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    figure, axes = plt.subplots(2, 7, figsize=(15, 5.2))
    short = ["pos", "neg", "unc", "—"]
    for axis, name in zip(axes.flat, OBSERVATIONS, strict=True):
        matrix = np.array(numbers["confusion"][name])
        axis.imshow(np.log1p(matrix), cmap="Blues")
        for (row, col), count in np.ndenumerate(matrix):
            colour = "white" if count > matrix.max() / 2 else "black"
            axis.text(col, row, str(count), ha="center", va="center", fontsize=7, color=colour)
        axis.set_title(name, fontsize=8)
        axis.set_xticks(range(4), short, fontsize=6)
        axis.set_yticks(range(4), short, fontsize=6)
    figure.supxlabel("draft label", fontsize=9)
    figure.supylabel("reference label", fontsize=9)
    figure.tight_layout()
    return _png(figure)


def _length_plot(lengths: dict[str, list[int]]) -> str:
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3))
    for (name, counts), colour in zip(lengths.items(), ("#2f6db5", "#8a9aab"), strict=False):
        axis.hist(counts, bins=30, alpha=0.6, label=name, color=colour)
    axis.set_xlabel("words per report")
    axis.set_ylabel("studies")
    axis.legend()
    return _png(figure)


def _calibration_section(numbers: dict[str, Any]) -> str:
    if "calibration" not in numbers:
        return ""
    import matplotlib.pyplot as plt

    calibration = numbers["calibration"]
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    bins = calibration["pooled"]["bins"]
    axis.plot([0, 1], [0, 1], color="#8a9aab", linestyle="--", label="perfect")
    axis.plot(
        [b["mean_confidence"] for b in bins],
        [b["observed_rate"] for b in bins],
        marker="o",
        color="#2f6db5",
        label="model (all findings pooled)",
    )
    axis.set_xlabel("mean confidence")
    axis.set_ylabel("observed positive rate")
    axis.legend(loc="upper left")
    rows = [
        [html.escape(name), f"{value['ece']:.3f}", str(sum(b["count"] for b in value["bins"]))]
        for name, value in calibration.items()
    ]
    return (
        "<h2>Calibration of per-finding confidence</h2>"
        + _png(figure)
        + _table(["observation", "ECE (10 bins)", "studies"], rows)
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _per_label_table(numbers: dict[str, Any]) -> str:
    rows = []
    for name in OBSERVATIONS:
        cells = [html.escape(name), str(numbers["per_label"]["unc0"][name]["support"])]
        for key in ("unc0", "unc1"):
            stats, ci = numbers["per_label"][key][name], numbers["intervals"][key][name]
            cells += [
                f"{stats['precision']:.2f}",
                f"{stats['recall']:.2f}",
                f"{stats['f1']:.2f} [{ci['low']:.2f}, {ci['high']:.2f}]",
            ]
        rows.append(cells)
    header = [
        "observation",
        "ref. positives (unc0)",
        "P unc0",
        "R unc0",
        "F1 unc0 [95% CI]",
        "P unc1",
        "R unc1",
        "F1 unc1 [95% CI]",
    ]
    return _table(header, rows)


def _highlight(report: LabeledReport, disagreeing: set[str]) -> str:
    pieces, cursor = [], 0
    for mention in sorted(report.mentions, key=lambda m: m.start):
        if mention.start < cursor:
            continue
        name = _MENTION_NAMES.get(mention.observation, mention.observation)
        css = "bad" if mention.observation in disagreeing else "ok"
        title = f"{name}: {_VALUE_TEXT[mention.value]}"
        pieces.append(html.escape(report.scored_text[cursor : mention.start]))
        pieces.append(
            f'<mark class="{css}" title="{html.escape(title)}">{html.escape(mention.text)}</mark>'
        )
        cursor = mention.end
    pieces.append(html.escape(report.scored_text[cursor:]))
    return "".join(pieces)


def _worst_cases(report: AuditReport) -> str:
    blocks = []
    for study_id, draft, reference, disagreements in report.worst:
        rows = [
            [html.escape(name), _VALUE_TEXT[ref], _VALUE_TEXT[gen]]
            for name, (ref, gen) in disagreements.items()
        ]
        table = (
            _table(["observation", "reference", "draft"], rows)
            if rows
            else ("<p class='note'>All 14 labels agree.</p>")
        )
        disagreeing = set(disagreements)
        reference_block = (
            f"<div><b>Reference</b><pre>{_highlight(reference, disagreeing)}</pre></div>"
            if reference is not None
            else "<div><b>Reference</b><p class='note'>Ground-truth labels only.</p></div>"
        )
        blocks.append(
            f"<div class='case'><h3>Study {html.escape(study_id)}: "
            f"{len(disagreements)} label disagreement(s)</h3>{table}<div class='texts'>"
            f"<div><b>Draft</b><pre>{_highlight(draft, disagreeing)}</pre></div>"
            f"{reference_block}</div></div>"
        )
    return "".join(blocks)


def _cards(numbers: dict[str, Any]) -> str:
    f1 = numbers["label_f1"]
    cards = [
        (str(numbers["n_studies"]), "studies"),
        (f"{f1['chexpert_rule_f1_macro14_unc0']:.3f}", "CheXpert-rule F1 macro-14, unc→0"),
        (f"{f1['chexpert_rule_f1_micro14_unc0']:.3f}", "CheXpert-rule F1 micro-14, unc→0"),
        (f"{f1['chexpert_rule_f1_macro5_unc1']:.3f}", "CheXpert-rule F1 macro-5, unc→1"),
    ]
    language = numbers.get("language", {})
    cards += [(f"{language[k]:.3f}", k) for k in ("bleu4", "rouge_l") if k in language]
    return (
        "<div class='cards'>"
        + "".join(
            f"<div class='card'><b>{value}</b><span>{html.escape(name)}</span></div>"
            for value, name in cards
        )
        + "</div>"
    )


def _stats_tables(numbers: dict[str, Any]) -> str:
    language = numbers.get("language", {})
    language_table = _table(
        ["metric", "value"], [[html.escape(k), f"{v:.4f}"] for k, v in language.items()]
    )
    label_table = _table(
        ["variant", "value"], [[html.escape(k), f"{v:.4f}"] for k, v in numbers["label_f1"].items()]
    )
    text_rows = []
    for side in numbers["length"]:
        stats = {**numbers["length"][side], **numbers["repetition"][side]}
        text_rows.append([side] + [f"{stats[k]:.2f}" for k in sorted(stats)])
    keys = sorted({**numbers["length"]["generated"], **numbers["repetition"]["generated"]})
    return (
        "<h2>Label F1, every convention</h2>"
        + label_table
        + ("<h2>Language metrics</h2>" + language_table if language else "")
        + "<h2>Length and repetition</h2>"
        + _table(["side", *keys], text_rows)
    )


def render(report: AuditReport) -> str:
    """The whole page as a string."""
    numbers = report.numbers
    mode = (
        "labels of reference reports"
        if numbers["mode"] == "reference_reports"
        else "ground-truth label columns"
    )
    legend = ", ".join(VALUE_NAMES)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>EchoCXR audit</title>
<style>{_STYLE}</style></head><body><main>
<h1>EchoCXR draft audit</h1>
<p class="sub">Drafts compared with {mode}. Labels come from the CheXpert-rule labeler
(clinical_eval), not CheXbert; uncertain findings are counted both as negative (unc→0) and as
positive (unc→1).</p>
{_cards(numbers)}
<h2>Per-observation F1 with 95% bootstrap intervals</h2>
{_f1_plot(numbers)}
{_per_label_table(numbers)}
<h2>Confusion matrices</h2>
<p class="note">Rows: reference value; columns: draft value ({legend}).</p>
{_confusion_plot(numbers)}
{_stats_tables(numbers)}
{_length_plot(report.word_counts)}
{_calibration_section(numbers)}
<h2>Worst studies</h2>
<p class="note">Ranked by label disagreements, then by lowest ROUGE-L. Highlighted: mentions the
labeler found; red where that observation disagrees (hover for the label).</p>
{_worst_cases(report)}
</main></body></html>
"""
