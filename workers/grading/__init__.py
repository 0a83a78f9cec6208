"""Grading answers (pure, no I/O): a request's reference, an answer's final answer, a grade, agreement.

Only the answer content is graded: a reasoning model's content after its thinking (``reasoning_content`` is
never passed here, and an inline ``<think>…</think>`` block in the content is dropped first; an unclosed
``<think>`` drops everything after it).

**The reference** (``reference_of``): ``metadata.reference`` of the batch line's body (else
``metadata.answer``), never sent to the LLM; ``metadata.grader`` may name the method: ``exact``, ``choice`` or
``numeric`` (anything else, or none: automatic). No reference: nothing to grade (agreement only).

**Extractors** (``final_answer(text, method)``), each returning a normal form, or None when it finds nothing:

- ``choice``: a letter A-J (MMLU-Pro's ten options), from any of: "The answer is (X)" / "the answer is X" /
  "answer is: X"; "Answer: X" / "answer: (X)"; a bold "**X**" (also "**(X)**", "**X. text**"); a line that
  is a lone letter ("X", "(X)", "X."). The last match in the text wins, whichever pattern found it. A bare
  letter must be upper case (so the article "a" is no answer); in parentheses either case. Normal form: the
  upper-case letter.
- ``numeric``: GSM8K's "#### N" (the last one), else the last "\\boxed{N}" (``\\frac{a}{b}`` read as a/b),
  else the last number in the text. A number may have a sign, thousands commas ("1,080"), decimals, be a
  fraction "3/4", have a leading "$" or a trailing "%" (dropped: "50%" reads as 50, GSM8K's convention).
  Normal form: an integer as such, else 12 significant digits; values compare equal within 1e-6 relative.
- ``exact``: the text after the last "answer is" / "answer:" marker on its line (else the whole text),
  stripped of markdown bold, casefolded, whitespace collapsed, surrounding quotes or brackets and trailing
  punctuation (".,;:!?") removed, repeatedly until nothing changes.
- automatic (``method=None``, for agreement without a reference): ``choice`` when a letter is found; else a
  numeric marker ("####", "\\boxed", a number after "answer is"/"answer:", or a text that is one number);
  else ``exact``. The last number of free text is not used here: two prose answers would "agree" on it.

**Grading** (``grade(answer, reference, method)``): the method is the one given, else chosen from the
reference: one letter A-J (optionally in parentheses) -> ``choice``; one number -> ``numeric``; otherwise
``exact``. A reference the given method cannot read (``numeric`` on "abc") is graded ``exact``. Correct when
the extracted answer equals the normalised reference (numbers within 1e-6 relative); no answer found is
wrong.

**Agreement** (``agree(a, b)``): both texts' final answers (automatic, or the given method) extracted and
equal after normalisation; None when either has none. Idempotent on final answers: ``agree`` of two stored
``final_answer`` values gives the same as of the texts they came from.
"""

from __future__ import annotations

from typing import get_args

from schemas.chat import ChatBody
from schemas.records import Grade, GradeMethod
from workers.grading.extract import (
    LETTERS,
    answer_text,
    canonical,
    choice,
    exact,
    normalise,
    number,
    numbers_equal,
    parse_number,
)

__all__ = ["METHODS", "agree", "final_answer", "grade", "method_of", "reference_of"]

METHODS: tuple[GradeMethod, ...] = get_args(GradeMethod)


def reference_of(body: ChatBody) -> tuple[str, GradeMethod | None] | None:
    """The request's reference and its grader (None: automatic), or None when it carries no reference."""
    meta = body.metadata or {}
    reference = meta.get("reference")
    if reference is None or not reference.strip():
        reference = meta.get("answer")
    if reference is None or not reference.strip():
        return None
    grader = (meta.get("grader") or "").strip().lower()
    method: GradeMethod | None = next((m for m in METHODS if m == grader), None)
    return reference, method


def method_of(reference: str) -> GradeMethod:
    """The automatic method for a reference: a lone letter A-J -> choice, a number -> numeric, else exact."""
    s = reference.strip().rstrip(".").strip()
    if len(s) == 3 and s[0] == "(" and s[2] == ")":
        s = s[1]
    if len(s) == 1 and s.upper() in LETTERS:
        return "choice"
    return "numeric" if parse_number(s) is not None else "exact"


def final_answer(text: str | None, method: GradeMethod | None = None) -> str | None:
    """The answer's final answer in normal form by ``method``'s extractor (None: automatic); None if none."""
    content = answer_text(text)
    if content is None:
        return None
    if method == "choice":
        return choice(content)
    if method == "numeric":
        value = number(content)
        return canonical(value) if value is not None else None
    if method == "exact":
        return exact(content)
    letter = choice(content)
    if letter is not None:
        return letter
    value = number(content, fallback=False)
    return canonical(value) if value is not None else exact(content)


def _reference_form(reference: str, method: GradeMethod) -> str | None:
    if method == "choice":
        s = reference.strip().rstrip(".").strip().strip("()").strip()
        return s.upper() if len(s) == 1 and s.upper() in LETTERS else choice(reference)
    if method == "numeric":
        value = parse_number(reference)
        if value is None:
            value = number(reference, fallback=False)
        return canonical(value) if value is not None else None
    return normalise(reference)


def _same(a: str, b: str) -> bool:
    x, y = parse_number(a), parse_number(b)
    if x is not None and y is not None:
        return numbers_equal(x, y)
    return a == b


def grade(answer: str | None, reference: str, method: GradeMethod | None = None) -> Grade:
    """``answer`` (the content, not the thinking) graded against ``reference`` (see the module docstring)."""
    chosen: GradeMethod = method or method_of(reference)
    ref = _reference_form(reference, chosen)
    if ref is None:  # the given method cannot read the reference
        chosen, ref = "exact", normalise(reference)
    extracted = final_answer(answer, chosen)
    correct = extracted is not None and (_same(extracted, ref) if chosen == "numeric" else extracted == ref)
    return Grade(method=chosen, correct=correct, extracted=extracted, reference=ref)


def agree(a: str | None, b: str | None, method: GradeMethod | None = None) -> bool | None:
    """Whether two answers' final answers are equal after normalisation; None when either has none."""
    fa, fb = final_answer(a, method), final_answer(b, method)
    if fa is None or fb is None:
        return None
    return _same(fa, fb)
