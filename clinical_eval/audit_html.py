"""The audit as one self-contained HTML page: tables, inline PNG plots, highlighted worst cases.

No scripts, no external files: the page can be mailed, archived or opened offline. Plots are
matplotlib (Agg) PNGs embedded as base64.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

from clinical_eval.audit import (
    CRITICAL,
    HEADLINE_CONVENTION,
    VALUE_NAMES,
    AuditReport,
    WorstStudy,
)
from clinical_eval.labeler import LabeledReport
from clinical_eval.lexicon import HEART_FAILURE
from clinical_eval.observations import FIVE_COMPETITION, OBSERVATIONS
from clinical_eval.scoring import metric_name

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
.card i{display:block;color:#5b6b7c;font-size:12px;font-style:normal}
td.no{color:#8a9aab}
dl.glossary dt{font-weight:600;margin-top:6px}dl.glossary dd{margin:0 0 0 16px;font-size:13px}
"""
_UNCERTAIN_AS = {"unc0": "uncertain = negative", "unc1": "uncertain = positive"}
_TEXT_STATS = {
    "mean_words": "mean words",
    "median_words": "median words",
    "p90_words": "90th percentile words",
    "share_with_repeated_sentence": "share with a repeated sentence",
    "mean_distinct_bigram_ratio": "mean distinct word pairs / all pairs",
}


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
            label=_UNCERTAIN_AS[key],
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
    header = ["observation", "reference positives (uncertain = negative)"]
    for key in ("unc0", "unc1"):
        header += [f"{word}, {_UNCERTAIN_AS[key]}" for word in ("precision", "recall")]
        header.append(f"F1, {_UNCERTAIN_AS[key]} [95% CI]")
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


def _case(study: WorstStudy) -> str:
    changing = set(study.f1_changing)
    rows = [
        [
            html.escape(name) + (" (critical)" if name in CRITICAL else ""),
            _VALUE_TEXT[ref],
            _VALUE_TEXT[gen],
            "yes" if name in changing else "<span class='no'>no</span>",
        ]
        for name, (ref, gen) in study.disagreements.items()
    ]
    table = (
        _table(["observation", "reference", "draft", "changes F1"], rows)
        if rows
        else "<p class='note'>All 14 labels agree.</p>"
    )
    reference_block = (
        f"<div><b>Reference</b><pre>{_highlight(study.reference, changing)}</pre></div>"
        if study.reference is not None
        else "<div><b>Reference</b><p class='note'>Ground-truth labels only.</p></div>"
    )
    return (
        f"<div class='case'><h3>Study {html.escape(study.study_id)}: "
        f"{len(changing)} disagreement(s) that change F1, clinical weight "
        f"{study.clinical_weight:g}</h3>{table}<div class='texts'>"
        f"<div><b>Draft</b><pre>{_highlight(study.draft, changing)}</pre></div>"
        f"{reference_block}</div></div>"
    )


def _interval(values: dict[str, float]) -> str:
    return f"{values['value']:.3f} [{values['low']:.3f}, {values['high']:.3f}]"


def _cards(numbers: dict[str, Any]) -> str:
    missing = len(numbers["missing_drafts"])
    studies = f"{numbers['n_studies']} studies audited" + (
        f"; {missing} without a draft" if missing else ""
    )
    cards = [(str(numbers["n_drafted"]), "drafts", studies)]
    cards += [
        (f"{card['value']:.3f}", card["name"], f"95% CI {card['low']:.3f} to {card['high']:.3f}")
        for card in numbers["headline"]["cards"]
    ]
    return (
        "<div class='cards'>"
        + "".join(
            f"<div class='card'><b>{value}</b><span>{html.escape(name)}</span>"
            f"<i>{html.escape(note)}</i></div>"
            for value, name, note in cards
        )
        + "</div>"
    )


def _stats_tables(numbers: dict[str, Any]) -> str:
    label_intervals = numbers["label_f1_intervals"]
    label_table = _table(
        ["variant", "value [95% CI]"],
        [[html.escape(metric_name(k)), _interval(label_intervals[k])] for k in numbers["label_f1"]],
    )
    language, intervals = numbers.get("language", {}), numbers.get("language_intervals", {})
    language_table = _table(
        ["metric", "value [95% CI]"],
        [
            [html.escape(metric_name(k)), _interval(intervals[k]) if k in intervals else f"{v:.4f}"]
            for k, v in language.items()
        ],
    )
    text_rows = []
    for side in numbers["length"]:
        stats = {**numbers["length"][side], **numbers["repetition"][side]}
        text_rows.append([side] + [f"{stats[k]:.2f}" for k in _TEXT_STATS])
    return (
        "<h2>Label F1, every convention</h2>"
        + label_table
        + (
            "<h2>Language metrics (drafted studies)</h2>"
            "<p class='note'>Corpus-level BLEU, METEOR and CIDEr-D have no per-study value to "
            "resample, so no interval.</p>" + language_table
            if language
            else ""
        )
        + "<h2>Length and repetition (drafted studies)</h2>"
        + _table(["side", *_TEXT_STATS.values()], text_rows)
    )


def _listing(title: str, items: dict[str, str], what: str) -> str:
    if not items:
        return ""
    rows = [[html.escape(name), html.escape(why)] for name, why in items.items()]
    return f"<h2>{html.escape(title)} ({len(items)})</h2>" + _table([what, "why"], rows)


def _glossary() -> str:
    five = ", ".join(FIVE_COMPETITION)
    entries = [
        ("Label F1", "F1 of the draft's labels (CheXpert-rule labeler) against the reference's, "
         "after each label is made positive or not."),
        ("micro / macro", "Micro pools every label's counts, so common findings dominate; macro "
         "averages the per-finding F1, so a rare finding counts as much as a common one."),
        ("14 / 5 findings", f"All 14 CheXpert observations (with No Finding), or the five of the "
         f"CheXpert competition: {five}."),
        ("uncertain = negative / positive", "A hedged finding (\"possible effusion\") counts "
         "as absent (0) or as present (1). The cards use uncertain = negative."),
        ("changes F1", "A disagreement where the finding is positive on one side only; "
         "negative against not mentioned, or uncertain against negative, changes nothing."),
        ("clinical weight", "Sum over the F1-changing disagreements of each finding's urgency: "
         f"1 for {', '.join(CRITICAL)}, 0.5 for findings that change management soon, "
         "0.25 for the others, 0 for No Finding."),
        ("95% CI", "Percentile bootstrap over studies (studies resampled with replacement)."),
        ("BLEU", "Every BLEU here is on a 0-1 scale."),
    ]  # fmt: skip
    body = "".join(f"<dt>{html.escape(t)}</dt><dd>{html.escape(d)}</dd>" for t, d in entries)
    return f"<h2>Glossary</h2><dl class='glossary'>{body}</dl>"


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
(clinical_eval), not CheXbert. Headline figures: {HEADLINE_CONVENTION}, with 95% bootstrap
intervals; the tables give every convention. A study without a draft counts as an empty report
in the label figures (each of its findings missed) and is left out of the language metrics.</p>
{_cards(numbers)}
{_listing("Studies without a draft", numbers["missing_drafts"], "study")}
{_listing("Drafts left out", numbers["drafts_left_out"], "draft")}
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
<p class="note">Drafted studies ranked by the label disagreements that change F1
({HEADLINE_CONVENTION}), then by clinical weight (a missed or false critical finding first), then
by lowest ROUGE-L. Highlighted: mentions the labeler found; red where that observation's
disagreement changes F1 (hover for the label).</p>
{"".join(_case(study) for study in report.worst)}
{_glossary()}
</main></body></html>
"""
