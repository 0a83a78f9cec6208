"""Final-answer extractors and normalisers (pure): what ``workers.grading`` grades and compares.

See the package docstring for each extractor's rules; this module holds the regular expressions.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

LETTERS = "ABCDEFGHIJ"  # MMLU-Pro's ten options

_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_OPEN_THINK = re.compile(r"<think>", re.I)

# a choice letter: in parentheses any case, else an upper-case letter standing alone
_LETTER = r"(?:\(([A-Ja-j])\)|\b([A-J])\b(?![\w'’]))"
_CHOICE_PATTERNS = (
    re.compile(r"(?i:answer\s+is\s*:?\s*(?:option\s+)?)\**\s*" + _LETTER),
    re.compile(r"(?i:answer\s*[:：]\s*(?:option\s+)?)\**\s*" + _LETTER),
    re.compile(r"\*\*\s*(?i:option\s+)?" + _LETTER + r"\s*(?:[.):]\s*[^*\n]{0,80})?\*\*"),
    re.compile(r"^[\s*>#-]*" + _LETTER + r"[\s.):*]*$", re.M),
)

_NUM = r"[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+−]?\.\d+"
_NUMBER = re.compile(rf"(?<![\w.,])(?:({_NUM})\s*/\s*({_NUM})|({_NUM}))(?![\d])(\s*%)?")
_GSM8K = re.compile(r"####\s*\$?\s*([^\n]*)")
_BOXED = re.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_FRAC = re.compile(r"\\d?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_ANSWER_SEGMENT = re.compile(r"answer\s*(?:is\s*[:：]?|[:：])\s*(.+)", re.I)

_QUOTES = {'"': '"', "'": "'", "“": "”", "‘": "’", "`": "`", "«": "»", "(": ")", "[": "]", "*": "*"}
_TRAILING = ".,;:!?。"
_SPACE = re.compile(r"\s+")


def answer_text(text: str | None) -> str | None:
    """The answer content without any inline thinking (``<think>…</think>``); None if nothing is left."""
    if text is None:
        return None
    text = _THINK.sub(" ", text)
    opened = _OPEN_THINK.search(text)
    if opened:  # an unclosed thinking block (a cut answer): everything after it is thinking
        text = text[: opened.start()]
    return text if text.strip() else None


def choice(text: str) -> str | None:
    """The multiple-choice letter (A-J, upper case); the last match of any pattern wins."""
    best: tuple[int, str] | None = None
    for pattern in _CHOICE_PATTERNS:
        for m in pattern.finditer(text):
            letter = (m.group(1) or m.group(2)).upper()
            pos = m.start(1) if m.group(1) else m.start(2)
            if best is None or pos > best[0]:
                best = (pos, letter)
    return best[1] if best else None


def parse_number(text: str) -> Fraction | None:
    """The value of ``text`` when all of it is one number (commas, sign, decimals, a/b, a trailing %)."""
    t = text.strip().rstrip(_TRAILING).strip().lstrip("$").strip()
    m = _NUMBER.fullmatch(t)
    return _value(m) if m else None


def _value(m: re.Match[str]) -> Fraction | None:
    def one(s: str) -> Fraction:
        return Fraction(s.replace(",", "").replace("−", "-"))

    if m.group(3) is not None:
        return one(m.group(3))
    den = one(m.group(2))
    return one(m.group(1)) / den if den else None


def last_number(text: str) -> Fraction | None:
    values = [v for v in (_value(m) for m in _NUMBER.finditer(text)) if v is not None]
    return values[-1] if values else None


def _latex_number(s: str) -> Fraction | None:
    s = _FRAC.sub(lambda m: f"{m.group(1)}/{m.group(2)}", s)
    s = s.replace("\\%", "%").replace("\\$", "").replace("\\,", "").replace("{", "").replace("}", "")
    return parse_number(s) if parse_number(s) is not None else last_number(s)


def number(text: str, fallback: bool = True) -> Fraction | None:
    """GSM8K's last ``#### N``, else the last ``\\boxed{N}``, else (``fallback``) the last number in the text."""
    marked = _GSM8K.findall(text)
    if marked:
        return _latex_number(marked[-1])
    boxed = _BOXED.findall(text)
    if boxed:
        return _latex_number(boxed[-1])
    if not fallback:
        segment = _ANSWER_SEGMENT.findall(text)
        return parse_number(_strip_markup(segment[-1])) if segment else parse_number(text)
    return last_number(text)


def canonical(value: Fraction) -> str:
    """A number's normal form: an integer as such, else 12 significant digits."""
    if value.denominator == 1:
        return str(value.numerator)
    return format(float(value), ".12g")


def numbers_equal(a: Fraction | float, b: Fraction | float, rel: float = 1e-6) -> bool:
    return a == b or math.isclose(float(a), float(b), rel_tol=rel, abs_tol=0.0)


def _strip_markup(s: str) -> str:
    return s.replace("**", "").replace("__", "").strip()


def normalise(text: str) -> str:
    """Exact-match form: casefolded, whitespace collapsed, surrounding quotes/brackets and trailing
    punctuation stripped (repeated until nothing changes, so it is idempotent)."""
    s = _SPACE.sub(" ", _strip_markup(text).casefold()).strip()
    while True:
        before = s
        s = s.rstrip(_TRAILING).strip()
        if len(s) >= 2 and _QUOTES.get(s[0]) == s[-1]:
            s = s[1:-1].strip()
        if s == before:
            return s


def exact(text: str) -> str | None:
    """The text after the last "answer is"/"answer:" marker (or all of it), normalised; None if empty."""
    segment = _ANSWER_SEGMENT.findall(text)
    s = normalise(segment[-1] if segment else text)
    return s or None
