"""CheXpert-rule labeler: 14 observations per report as 1 / 0 / -1 / None, with evidence.

The pipeline follows the CheXpert labeler's stages (Irvin et al., 2019, arXiv 1901.07031) with
offline parts: spaCy's blank English plus medspaCy's tokenizer, TargetMatcher (mentions from
``lexicon.MENTIONS`` and ``lexicon.ANATOMY``) and ConText (negation, uncertainty, history, size
and clause boundaries from ``lexicon``). spaCy's rule sentencizer splits sentences: medspaCy's
PyRuSH runs at about 120 reports/s here and would miss the 200 reports/s target on its own, and
no spaCy parser model installs from PyPI from a trusted source (only third-party re-uploads), so
scopes come from ConText rules and clause words rather than a dependency parse.

Before labelling, only the findings and impression are kept (indications and histories name
diseases the film is checked for), a templated "Heart: normal" line becomes a sentence, and a
query "?pneumonia" becomes "possible pneumonia".

Per finding mention the first rule that applies wins, in the CheXpert order: a double negative
("cannot be excluded") makes it uncertain; a history or a clinical question ("evaluate for")
leaves it blank; a negation (also "resolved", "removed", "no residual") makes it negative; a
hedge uncertain; otherwise positive. Anatomy (heart, mediastinum, pulmonary vessels) asserts
nothing by itself: a normal statement makes it negative, a size word positive, a hedge or
"stable" uncertain, and with none of them it stays blank. Per report: any positive wins, then
uncertain, then negative; Lung Opacity takes its strongest child (``with_parents``). These are
"CheXpert-rule labels": never call them CheXbert labels.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
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
"""Sections scored; text under no header counts as findings."""

SECTION_HEADERS: dict[str, str] = {
    "findings": "findings",
    "finding": "findings",
    "report": "findings",
    "impression": "impression",
    "impressions": "impression",
    "imp": "impression",
    "conclusion": "impression",
    "conclusions": "impression",
    "opinion": "impression",
    "summary": "impression",
    "interpretation": "impression",
    "indication": "indication",
    "indications": "indication",
    "clinical indication": "indication",
    "reason for exam": "indication",
    "reason for examination": "indication",
    "reason for study": "indication",
    "clinical details": "indication",
    "clinical information": "indication",
    "clinical question": "indication",
    "history": "history",
    "clinical history": "history",
    "comparison": "comparison",
    "comparisons": "comparison",
    "technique": "technique",
    "examination": "technique",
    "exam": "technique",
    "procedure": "technique",
    "recommendation": "recommendation",
    "recommendations": "recommendation",
    "notification": "notification",
}
"""Header words (before a colon) and the section they open. Other "Word:" labels ("Heart:",
"LINES/TUBES:") are organ lines of a templated findings section, not sections."""

_HEADER = re.compile(
    r"(?im)(?:^|(?<=\.)[ \t]+)[ \t]*("
    + "|".join(sorted((re.escape(h) for h in SECTION_HEADERS), key=len, reverse=True))
    + r")[ \t]*:"
)
_ONE_LINE_SECTIONS = frozenset({"indication", "history", "comparison", "technique"})
_ORGAN_LINE = re.compile(r"(?m)^[ \t]*([A-Za-z][A-Za-z /&-]{0,40}):[ \t]*")
_ORGAN_NONE = re.compile(r"(?im)^[ \t]*([A-Za-z][A-Za-z /&-]{0,40}):[ \t]*none\.?[ \t]*$")
_QUERY = re.compile(r"\?(?=[A-Za-z])")
_AND_OR = re.compile(r"(?i)\band/or\b")
_LINE_END = re.compile(r"(?m)(?<=[A-Za-z0-9)])[ \t]*$")

_PRE_NEGATION = "PRE_NEGATION_UNCERTAIN"
_NEGATED = "NEGATED_EXISTENCE"
_POSSIBLE = "POSSIBLE_EXISTENCE"
_HISTORICAL = "HISTORICAL"
_NORMAL = "NORMAL"
_ENLARGED = "ENLARGED"
_SIZE_HEDGE = "SIZE_HEDGE"
_STABLE = "STABLE"
_CLAUSE = "CLAUSE"
_IGNORED = frozenset({"PSEUDO", "TERMINATE", _CLAUSE})
_SHORT_SCOPE_HEDGES = frozenset({"or", "versus", "vs", "may", "might"})
_SHORT_SCOPE = 3
_ENLARGED_SCOPE = 5
_NORMAL_AFTER_FINDING = lexicon.NEGATION_BACKWARD_LOOKBEHIND
_NORMAL_BEFORE_FINDING = 3
_SIZE_OBSERVATIONS = frozenset({"Cardiomegaly", "Enlarged Cardiomediastinum"})
ANATOMY_TAG = "@anatomy"
"""Suffix of the target label of an anatomy mention ("Cardiomegaly@anatomy")."""
SIGN_TAG = "@sign"
"""Suffix of an indirect sign ("blunting of the costophrenic angle" for an effusion): it counts
only when its sentence names the finding nowhere else, so "blunting, which may reflect a small
effusion" stays uncertain."""


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


def _segments(text: str) -> Iterator[tuple[str, str]]:
    """(section, text) pieces in order; unheaded text is findings, and a one-line section
    (indication, history, comparison, technique) ends with its line."""
    headers = list(_HEADER.finditer(text))
    section, position = "findings", 0
    for header in [*headers, None]:
        end = header.start() if header else len(text)
        body = text[position:end]
        if section in _ONE_LINE_SECTIONS and "\n" in body:
            first, rest = body.split("\n", 1)
            yield section, first
            yield "findings", rest
        else:
            yield section, body
        if header:
            section, position = SECTION_HEADERS[header.group(1).lower()], header.end()


def select_sections(text: str, sections: Sequence[str] = DEFAULT_SECTIONS) -> str:
    """Keep only the named sections of a report; text under no header counts as findings.

    Peers score FINDINGS (and often IMPRESSION); INDICATION and HISTORY name diseases the
    patient is being checked for, which would be false mentions.
    """
    wanted = {name.lower() for name in sections}
    kept = [body.strip() for section, body in _segments(text) if section in wanted]
    return "\n\n".join(part for part in kept if part)


def normalize(text: str) -> str:
    """Rewrite report shorthand into sentences the rules read.

    "LINES/TUBES: None." becomes "No LINES/TUBES."; other "Organ: text" lines lose the colon (a
    colon ends a trigger's scope, and "Heart: enlarged" must still reach the heart); a line
    without final punctuation ends a sentence; "?pneumonia" is "possible pneumonia"; "and/or"
    is "or".
    """
    text = _ORGAN_NONE.sub(lambda m: f"No {m.group(1)}.", text)
    text = _ORGAN_LINE.sub(lambda m: f"{m.group(1)} ", text)
    text = _QUERY.sub("possible ", text)
    text = _AND_OR.sub("or", text)
    return _LINE_END.sub(".", text)


def _rules(phrases: Iterable[str], category: str, direction: str, **options: Any) -> list[Any]:
    from medspacy.context import ConTextRule

    return [ConTextRule(p, category, direction=direction, **options) for p in phrases]


def _context_rules() -> list[Any]:
    """ConText rules: clause starts end negations and hedges, never a size word's reach."""
    clause = {"terminated_by": {_CLAUSE}}
    short_hedges = [p for p in lexicon.UNCERTAINTY_BIDIRECTIONAL if p in _SHORT_SCOPE_HEDGES]
    long_hedges = [p for p in lexicon.UNCERTAINTY_BIDIRECTIONAL if p not in _SHORT_SCOPE_HEDGES]
    enlarged = dict.fromkeys([*lexicon.ENLARGED, *lexicon.VESSELS_ABNORMAL])
    return [
        *_rules(lexicon.PRE_NEGATION_UNCERTAIN, _PRE_NEGATION, "BIDIRECTIONAL", **clause),
        *_rules(lexicon.HISTORY_OR_REQUEST, _HISTORICAL, "FORWARD", **clause),
        *_rules(lexicon.NEGATION_FORWARD, _NEGATED, "FORWARD", **clause),
        *_rules(
            lexicon.NEGATION_BACKWARD,
            _NEGATED,
            "BACKWARD",
            max_scope=lexicon.NEGATION_BACKWARD_LOOKBEHIND,
            **clause,
        ),
        *_rules(
            lexicon.NEGATION_BIDIRECTIONAL,
            _NEGATED,
            "BIDIRECTIONAL",
            max_scope=lexicon.NEGATION_BACKWARD_LOOKBEHIND,
            **clause,
        ),
        *_rules(lexicon.ANATOMY_NORMAL, _NORMAL, "BIDIRECTIONAL", **clause),
        *_rules(lexicon.UNCERTAINTY_FORWARD, _POSSIBLE, "FORWARD", **clause),
        *_rules(lexicon.UNCERTAINTY_BACKWARD, _POSSIBLE, "BACKWARD", **clause),
        *_rules(short_hedges, _POSSIBLE, "BIDIRECTIONAL", max_scope=_SHORT_SCOPE, **clause),
        *_rules(long_hedges, _POSSIBLE, "BIDIRECTIONAL", **clause),
        *_rules(lexicon.SIZE_HEDGES, _SIZE_HEDGE, "BIDIRECTIONAL"),
        *_rules(lexicon.STABLE_SIZE, _STABLE, "BIDIRECTIONAL"),
        *_rules(enlarged, _ENLARGED, "BIDIRECTIONAL", max_scope=_ENLARGED_SCOPE),
        *_rules(lexicon.PSEUDO_TRIGGERS, "PSEUDO", "PSEUDO"),
        *_rules(lexicon.CLAUSE_STARTS, _CLAUSE, "PSEUDO"),
        *_rules(lexicon.TERMINATORS, "TERMINATE", "TERMINATE"),
    ]


def _target_rules() -> list[Any]:
    from medspacy.target_matcher import TargetRule

    findings = [
        TargetRule(phrase, observation)
        for observation, phrases in lexicon.MENTIONS.items()
        for phrase in dict.fromkeys(phrases)
    ]
    anatomy = [
        TargetRule(phrase, observation + ANATOMY_TAG)
        for observation, phrases in lexicon.ANATOMY.items()
        for phrase in phrases
    ]
    return findings + anatomy + _blunting_rules()


def _blunting_rules() -> list[Any]:
    """ "Blunting of the left posterior costophrenic angle" and its variants, as one pattern:
    a phrase list would need every combination of side, recess and word order."""
    from medspacy.target_matcher import TargetRule

    side = {"LOWER": {"IN": ["left", "right", "bilateral", "posterior", "lateral", "both"]}}
    recess = {"LOWER": {"IN": ["angle", "angles", "sulcus", "sulci", "recess", "recesses", "xxxx"]}}
    costophrenic = {"LOWER": {"IN": ["costophrenic", "cp"]}}
    blunting = {"LOWER": {"IN": ["blunting", "blunted", "blunt"]}}
    before = [
        blunting,
        {"LOWER": "of", "OP": "?"},
        {"LOWER": {"IN": ["the", "both"]}, "OP": "?"},
        {**side, "OP": "*"},
        costophrenic,
        recess,
    ]
    after = [{**side, "OP": "*"}, costophrenic, recess, blunting]
    return [
        TargetRule("costophrenic blunting", "Pleural Effusion" + SIGN_TAG, pattern=pattern)
        for pattern in (before, after)
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


_PRECEDENCE: tuple[tuple[frozenset[str], int | None], ...] = (
    (frozenset({_PRE_NEGATION}), UNCERTAIN),
    (frozenset({_HISTORICAL}), None),
    (frozenset({_NEGATED, _NORMAL}), NEGATIVE),
    (frozenset({_POSSIBLE, _SIZE_HEDGE}), UNCERTAIN),
)
"""The CheXpert order: double negative, then (ours) history or request, negation, hedge."""


def mention_value(categories: set[str], anatomy: bool) -> int | None:
    """The first rule of ``_PRECEDENCE`` that applies; else a finding is positive, and anatomy
    is positive with a size word, uncertain when only "stable", blank with nothing."""
    for triggers, value in _PRECEDENCE:
        if categories & triggers:
            return value
    if not anatomy or _ENLARGED in categories:
        return POSITIVE
    return UNCERTAIN if _STABLE in categories else None


def _reaches_finding(modifier: Any, entity: Span) -> bool:
    """A "normal" reaches a finding only close by ("effusion is normal"? rarely; "lungs are
    normal, small effusion" must not deny the effusion), size words never do."""
    start, end = modifier.modifier_span
    if modifier.category == _NORMAL:
        if start >= entity.end:
            return start - entity.end <= _NORMAL_AFTER_FINDING
        return entity.start - end <= _NORMAL_BEFORE_FINDING
    if modifier.category == _SIZE_HEDGE:
        return entity.label_ in _SIZE_OBSERVATIONS
    return modifier.category not in (_ENLARGED, _STABLE)


def _named_elsewhere(entity: Span, observation: str) -> bool:
    """Whether the entity's sentence has another, direct mention of the observation."""
    return any(e.label_ == observation for e in entity.sent.ents if e != entity)


def _mentions(entity: Span) -> Iterator[Mention]:
    """The mention(s) of one matched phrase: none for anatomy that nothing qualifies, two for a
    hydropneumothorax (pneumothorax and effusion)."""
    observation, _, tag = entity.label_.partition("@")
    modifiers = [m for m in entity._.modifiers if m.category not in _IGNORED]
    anatomy = tag == ANATOMY_TAG[1:]
    if tag and not anatomy and _named_elsewhere(entity, observation):
        return
    if not anatomy:
        modifiers = [m for m in modifiers if _reaches_finding(m, entity)]
    value = mention_value({m.category for m in modifiers}, anatomy)
    if value is None:
        return
    triggers = tuple(entity.doc[slice(*m.modifier_span)].text for m in modifiers)
    where = (entity.text, entity.sent.text, entity.start_char, entity.end_char)
    yield Mention(observation, *where, value, triggers)
    if observation == "Pneumothorax" and entity.text.lower().startswith("hydro"):
        yield Mention("Pleural Effusion", *where, value, triggers)


def _combine(values: Iterable[int]) -> int | None:
    """Any positive wins; negative plus uncertain is uncertain (CheXpert aggregation)."""
    seen = set(values)
    for value in (POSITIVE, UNCERTAIN, NEGATIVE):
        if value in seen:
            return value
    return None


LUNG_OPACITY_CHILDREN: tuple[str, ...] = (
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Lung Lesion",
)
"""Observations that are kinds of lung opacity in the CheXpert label hierarchy."""


def with_parents(labels: Labels) -> Labels:
    """Lung Opacity raised to its strongest child: a positive child makes it positive, an
    uncertain one at least uncertain (the CheXpert hierarchy; a negative child says nothing).

    Also for truth vectors written without the hierarchy (the phantom's), so that both sides of
    a comparison follow one convention.
    """
    children = {labels[name] for name in LUNG_OPACITY_CHILDREN}
    raised = dict(labels)
    if POSITIVE in children:
        raised["Lung Opacity"] = POSITIVE
    elif UNCERTAIN in children and labels["Lung Opacity"] in (None, NEGATIVE):
        raised["Lung Opacity"] = UNCERTAIN
    return raised


def aggregate(mentions: Iterable[Mention]) -> Labels:
    """Report labels from mention values, with the heart failure and No Finding conventions."""
    by_observation: dict[str, list[int]] = {}
    for mention in mentions:
        by_observation.setdefault(mention.observation, []).append(mention.value)
    heart_failure = by_observation.pop(lexicon.HEART_FAILURE, [])
    by_observation.setdefault("Edema", []).extend(heart_failure)
    if any(value != NEGATIVE for value in heart_failure):
        by_observation.setdefault("Cardiomegaly", []).append(UNCERTAIN)
    labels = with_parents({name: _combine(by_observation.get(name, [])) for name in OBSERVATIONS})
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
    scored = [normalize(select_sections(text, sections)) for text in texts]
    with warnings.catch_warnings():
        # medspaCy's TargetMatcher keeps an empty token matcher beside its phrase matcher (all
        # our rules are phrases), and spaCy warns about that on every document.
        warnings.filterwarnings("ignore", message=r"\[W036\]")
        docs = list(pipeline().pipe(scored, batch_size=64))
    results = []
    for text, doc in zip(scored, docs, strict=True):
        mentions = tuple(
            mention
            for entity in doc.ents
            if entity.label_ != lexicon.EXCLUDED
            for mention in _mentions(entity)
        )
        results.append(LabeledReport(aggregate(mentions), mentions, text))
    return results


def label(texts: Sequence[str], sections: Sequence[str] = DEFAULT_SECTIONS) -> list[Labels]:
    """CheXpert-rule labels: one dict per report keyed by ``OBSERVATIONS``, values 1/0/-1/None."""
    return [report.labels for report in label_with_evidence(texts, sections)]
