"""The fonts of the printed report, so that a name or an edited report prints as it is written.

reportlab's standard fonts draw only Windows-1252: the patient's name on the page a printed
report is matched by came out as black boxes for a Czech 'ř', any Cyrillic name or a Japanese
one written only in kanji. The body font is DejaVu Sans (Latin, Greek, Cyrillic; Debian
``fonts-dejavu-core``), embedded in the PDF. Chinese, Japanese and Korean characters, which it
lacks, are set in the Adobe CJK fonts that every PDF viewer supplies (reportlab names them
without embedding). Where DejaVu Sans is not installed, Helvetica draws the page and is logged
once. A character that no font draws (Thai, Devanagari, an emoji) prints as U+FFFD, a visible
"not printable" mark, never as a wrong letter; the SR and FHIR files keep every character.
"""

from __future__ import annotations

import functools
import logging
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfbase.ttfonts import TTFont

log = logging.getLogger(__name__)

# Debian and Ubuntu, then Fedora/RHEL and Arch
FONT_DIRECTORIES = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/dejavu-sans-fonts"),
    Path("/usr/share/fonts/TTF"),
)
BODY_FONT, BODY_BOLD = "DejaVuSans", "DejaVuSans-Bold"
FALLBACK_FONT, FALLBACK_BOLD = "Helvetica", "Helvetica-Bold"
# Adobe's CJK collections, by the script a run of characters shows
KOREAN, JAPANESE, CHINESE = "HYGothic-Medium", "HeiseiKakuGo-W5", "STSong-Light"
NOT_PRINTABLE = "\ufffd"

HAN = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3FFFF))
KANA = ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F))
HANGUL = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF))
CJK_PUNCTUATION = ((0x3000, 0x303F), (0xFF00, 0xFF65), (0xFFA0, 0xFFEF))


@dataclass(frozen=True)
class ReportFonts:
    """The body fonts (regular, bold, the model line's italic) and which characters they draw."""

    regular: str
    bold: str
    italic: str
    draws: Callable[[str], bool]

    def markup(self, text: str) -> str:
        """``text`` escaped for a reportlab Paragraph, runs of CJK characters set in a CJK font
        and characters no font draws replaced by U+FFFD."""
        runs: list[tuple[str | None, str]] = []  # (font, text); None: the body font
        for character in text:
            drawn = self.draws(character)
            font = None if drawn else cjk_font(character)
            if not drawn and font is None:
                character = NOT_PRINTABLE if self.draws(NOT_PRINTABLE) else "?"
            if runs and runs[-1][0] == font:
                runs[-1] = (font, runs[-1][1] + character)
            else:
                runs.append((font, character))
        return "".join(
            escape(run) if font is None else f'<font name="{font}">{escape(run)}</font>'
            for font, run in runs
        )


def in_ranges(character: str, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= ord(character) <= high for low, high in ranges)


def cjk_font(character: str) -> str | None:
    """The CJK font for a character of those scripts (None for any other character).

    Han characters shared by the three languages go to the Chinese collection, which also
    holds kana; Japanese and Korean collections are chosen by kana and hangul.
    """
    if in_ranges(character, HANGUL):
        return KOREAN
    if in_ranges(character, KANA):
        return JAPANESE
    if in_ranges(character, HAN + CJK_PUNCTUATION):
        return CHINESE
    return None


def _layout_character(character: str) -> bool:
    """Spaces and control characters: the paragraph lays them out, no glyph is drawn."""
    return character.isspace() or unicodedata.category(character).startswith("C")


@functools.cache
def report_fonts() -> ReportFonts:
    """The fonts found on this machine, registered with reportlab once per process."""
    for font in (KOREAN, JAPANESE, CHINESE):
        pdfmetrics.registerFont(UnicodeCIDFont(font))
    directory = next((d for d in FONT_DIRECTORIES if (d / "DejaVuSans.ttf").is_file()), None)
    if directory is None or not (directory / "DejaVuSans-Bold.ttf").is_file():
        log.warning(
            "DejaVu Sans not found (Debian: fonts-dejavu-core); report PDFs print only "
            "Windows-1252 and CJK characters, others as '?'"
        )
        return ReportFonts(FALLBACK_FONT, FALLBACK_BOLD, "Helvetica-Oblique", _windows_1252)
    regular = TTFont(BODY_FONT, str(directory / "DejaVuSans.ttf"))
    pdfmetrics.registerFont(regular)
    pdfmetrics.registerFont(TTFont(BODY_BOLD, str(directory / "DejaVuSans-Bold.ttf")))
    pdfmetrics.registerFontFamily(
        BODY_FONT, normal=BODY_FONT, bold=BODY_BOLD, italic=BODY_FONT, boldItalic=BODY_BOLD
    )
    glyphs = regular.face.charToGlyph
    # fonts-dejavu-core ships no oblique: the model line is set upright
    return ReportFonts(
        BODY_FONT, BODY_BOLD, BODY_FONT, lambda c: _layout_character(c) or ord(c) in glyphs
    )


def _windows_1252(character: str) -> bool:
    if _layout_character(character):
        return True
    try:
        character.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True
