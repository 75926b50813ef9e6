"""CheXpert-rule labeler: 14 observations per report as 1 / 0 / -1 / None, with evidence.

The pipeline follows the CheXpert labeler's stages (Irvin et al., 2019, arXiv 1901.07031) with
offline parts: spaCy's blank English plus medspaCy's tokenizer, TargetMatcher (mentions from
``lexicon.MENTIONS``) and ConText (negation, uncertainty, termination from ``lexicon``). A sentence
splitter from spaCy replaces medspaCy's PyRuSH, which runs at about 120 reports/s here and would
miss the 200 reports/s target on its own.

Per mention the first rule that applies wins, in the CheXpert order: a double negative such as
"cannot be excluded" makes it uncertain; a negation makes it negative; a hedge (or, for the heart
and mediastinum, "stable"/"unchanged") makes it uncertain; otherwise it is positive. Per report:
any positive wins, then uncertain, then negative. These are "CheXpert-rule labels": never call
them CheXbert labels.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from clinical_eval import lexicon
from clinical_eval.observations import OBSERVATIONS

if TYPE_CHECKING:
    from spacy.language import Language
    from spacy.tokens import Span

Labels = dict[str, int | None]

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1

DEFAULT_SECTIONS: tuple[str, ...] = ("findings", "impression")
"""Sections scored when a report has headers; a report without headers is scored whole."""

_SECTION_HEADER = re.compile(
    r"(?im)^[ \t]*(findings|impression|conclusion|indication|history|clinical history|"
    r"comparison|technique|examination|exam|recommendations?|notification)[ \t]*:"
)

_CATEGORY_PRE_NEGATION = "PRE_NEGATION_UNCERTAIN"
_CATEGORY_NEGATED = "NEGATED_EXISTENCE"
_CATEGORY_POSSIBLE = "POSSIBLE_EXISTENCE"
_CATEGORY_STABLE = "STABLE_SIZE"
_SHORT_SCOPE_HEDGES = frozenset({"or", "versus", "vs", "and/or", "may", "might"})
_SHORT_SCOPE = 3
_SIZE_OBSERVATIONS = frozenset({"Cardiomegaly", "Enlarged Cardiomediastinum"})
_NORMAL_SCOPE = 4


@dataclass(frozen=True)
class Mention:
    """One observation mention and the value its context gave it.

    Attributes
    ----------
    observation : str
        CheXpert name, or an internal category (``lexicon.OTHER_FINDING``, heart failure).
    text : str
        The mention as written.
    sentence : str
        The sentence it sits in: what a reviewer reads to check the label.
    start, end : int
        Character offsets in the scored text (the selected sections, joined by blank lines).
    value : int
        1, 0 or -1.
    triggers : tuple[str, ...]
        The context phrases that set the value, empty for a plain positive mention.
    """

    observation: str
    text: str
    sentence: str
    start: int
    end: int
    value: int
    triggers: tuple[str, ...]


@dataclass(frozen=True)
class LabeledReport:
    """Report-level labels plus the mentions behind them, for drill-down in audits."""

    labels: Labels
    mentions: tuple[Mention, ...]
    scored_text: str


def select_sections(text: str, sections: Sequence[str] = DEFAULT_SECTIONS) -> str:
    """Keep only the named sections of a report, or the whole text when it has no headers.

    Peers score FINDINGS (and often IMPRESSION); INDICATION and HISTORY name diseases the
    patient is being checked for, which would be false mentions.
    """
    headers = list(_SECTION_HEADER.finditer(text))
    if not headers:
        return text.strip()
    wanted = {name.lower() for name in sections}
    kept = []
    for index, header in enumerate(headers):
        end = headers[index + 1].start() if index + 1 < len(headers) else len(text)
        if header.group(1).lower() in wanted:
            kept.append(text[header.end() : end].strip())
    # No wanted section: the unheaded opening text is the best guess at the findings.
    return "\n\n".join(part for part in kept if part) or text[: headers[0].start()].strip()


def _context_rules() -> list[Any]:
    from medspacy.context import ConTextRule

    rules = [
        ConTextRule(p, _CATEGORY_PRE_NEGATION, direction="BIDIRECTIONAL")
        for p in lexicon.PRE_NEGATION_UNCERTAIN
    ]
    rules += [
        ConTextRule(p, _CATEGORY_NEGATED, direction="FORWARD") for p in lexicon.NEGATION_FORWARD
    ]
    rules += [
        ConTextRule(
            p,
            _CATEGORY_NEGATED,
            direction="BIDIRECTIONAL" if p == "normal" else "BACKWARD",
            max_scope=_NORMAL_SCOPE if p == "normal" else lexicon.NEGATION_BACKWARD_LOOKBEHIND,
        )
        for p in lexicon.NEGATION_BACKWARD
    ]
    rules += [
        ConTextRule(p, _CATEGORY_POSSIBLE, direction="FORWARD") for p in lexicon.UNCERTAINTY_FORWARD
    ]
    rules += [
        ConTextRule(p, _CATEGORY_POSSIBLE, direction="BACKWARD")
        for p in lexicon.UNCERTAINTY_BACKWARD
    ]
    rules += [
        ConTextRule(
            p,
            _CATEGORY_POSSIBLE,
            direction="BIDIRECTIONAL",
            max_scope=_SHORT_SCOPE if p in _SHORT_SCOPE_HEDGES else None,
        )
        for p in lexicon.UNCERTAINTY_BIDIRECTIONAL
    ]
    rules += [
        ConTextRule(
            p, _CATEGORY_STABLE, direction="BIDIRECTIONAL", allowed_types=set(_SIZE_OBSERVATIONS)
        )
        for p in lexicon.STABLE_SIZE
    ]
    rules += [ConTextRule(p, "PSEUDO", direction="PSEUDO") for p in lexicon.PSEUDO_TRIGGERS]
    rules += [ConTextRule(p, "TERMINATE", direction="TERMINATE") for p in lexicon.TERMINATORS]
    return rules


def _target_rules() -> list[Any]:
    from medspacy.target_matcher import TargetRule

    return [
        TargetRule(phrase, observation)
        for observation, phrases in lexicon.MENTIONS.items()
        for phrase in dict.fromkeys(phrases)
    ]


@lru_cache(maxsize=1)
def pipeline() -> Language:
    """The spaCy pipeline, built once per process: building it costs about a second.

    Uses only offline pieces: no spaCy model package and no medspaCy default rule files.
    """
    import medspacy

    nlp = medspacy.load(
        medspacy_enable=["medspacy_tokenizer", "medspacy_target_matcher", "medspacy_context"],
        load_rules=False,
    )
    nlp.add_pipe("sentencizer", first=True)
    nlp.get_pipe("medspacy_target_matcher").add(_target_rules())
    nlp.get_pipe("medspacy_context").add(_context_rules())
    return nlp


def neutral_size(mention: str) -> bool:
    """Whether a heart/mediastinum mention names a size, not an abnormality.

    "Stable heart size" leaves open whether the heart is big (uncertain, as in CheXpert), while
    "stable cardiomegaly" asserts it is.
    """
    lowered = mention.lower()
    return not any(word in lowered for word in ("cardiomegaly", "enlarge", "widen"))


def mention_value(categories: Iterable[str], observation: str, text: str = "") -> int:
    """The CheXpert precedence: double negative, then negation, then hedge, else positive."""
    found = set(categories)
    if _CATEGORY_PRE_NEGATION in found:
        return UNCERTAIN
    if _CATEGORY_NEGATED in found:
        return NEGATIVE
    if _CATEGORY_POSSIBLE in found:
        return UNCERTAIN
    if _CATEGORY_STABLE in found and observation in _SIZE_OBSERVATIONS and neutral_size(text):
        return UNCERTAIN
    return POSITIVE


def _mention(entity: Span) -> Mention:
    modifiers = [m for m in entity._.modifiers if m.category not in ("PSEUDO", "TERMINATE")]
    categories = [m.category for m in modifiers]
    return Mention(
        observation=entity.label_,
        text=entity.text,
        sentence=entity.sent.text,
        start=entity.start_char,
        end=entity.end_char,
        value=mention_value(categories, entity.label_, entity.text),
        triggers=tuple(entity.doc[slice(*m.modifier_span)].text for m in modifiers),
    )


def _combine(values: Iterable[int]) -> int | None:
    """Any positive wins; negative plus uncertain is uncertain (CheXpert aggregation)."""
    seen = set(values)
    for value in (POSITIVE, UNCERTAIN, NEGATIVE):
        if value in seen:
            return value
    return None


def aggregate(mentions: Iterable[Mention]) -> Labels:
    """Report labels from mention values, with the heart failure and No Finding conventions."""
    by_observation: dict[str, list[int]] = {}
    for mention in mentions:
        by_observation.setdefault(mention.observation, []).append(mention.value)
    heart_failure = by_observation.pop(lexicon.HEART_FAILURE, [])
    by_observation.setdefault("Edema", []).extend(heart_failure)
    if any(value != NEGATIVE for value in heart_failure):
        by_observation.setdefault("Cardiomegaly", []).append(UNCERTAIN)
    labels: Labels = {name: _combine(by_observation.get(name, [])) for name in OBSERVATIONS}
    other = _combine(by_observation.get(lexicon.OTHER_FINDING, []))
    abnormal = [labels[name] for name in OBSERVATIONS[1:-1]] + [other]
    labels["No Finding"] = None if any(v in (POSITIVE, UNCERTAIN) for v in abnormal) else 1
    return labels


def label_with_evidence(
    texts: Sequence[str], sections: Sequence[str] = DEFAULT_SECTIONS
) -> list[LabeledReport]:
    """Label reports and keep every mention with its sentence and the triggers that decided it.

    Parameters
    ----------
    texts : sequence of str
        Free-text reports; section headers (FINDINGS:, IMPRESSION:) are honoured when present.
    sections : sequence of str
        Which sections to score when headers are present.

    Returns
    -------
    list of LabeledReport
        One per text, in order.
    """
    if isinstance(texts, str):
        raise TypeError("label() takes a sequence of reports, not one string: wrap it in a list")
    not_text = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if not_text:
        raise TypeError(f"reports at positions {not_text[:10]} are not strings")
    scored = [select_sections(text, sections) for text in texts]
    with warnings.catch_warnings():
        # medspaCy's TargetMatcher keeps an empty token matcher beside its phrase matcher (all
        # our rules are phrases), and spaCy warns about that on every document.
        warnings.filterwarnings("ignore", message=r"\[W036\]")
        docs = list(pipeline().pipe(scored, batch_size=64))
    results = []
    for text, doc in zip(scored, docs, strict=True):
        mentions = tuple(
            _mention(entity) for entity in doc.ents if entity.label_ != lexicon.EXCLUDED
        )
        results.append(LabeledReport(aggregate(mentions), mentions, text))
    return results


def label(texts: Sequence[str], sections: Sequence[str] = DEFAULT_SECTIONS) -> list[Labels]:
    """CheXpert-rule labels: one dict per report keyed by ``OBSERVATIONS``, values 1/0/-1/None."""
    return [report.labels for report in label_with_evidence(texts, sections)]
