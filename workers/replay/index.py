"""Find which MMLU-Pro question a prompt asks, whatever wrapper it comes in.

Recognised: the bare question text, prompts made by `workers.data.prompts.format_mcq_prompt`, and any other
text that contains the question verbatim (whitespace is normalised everywhere). Questions of at least
`PREFIX_CHARS` characters are found anywhere in the text (a sliding window over the normalised text
looks their first characters up in a dict, then the whole question is checked); shorter ones (e.g.
"What is a cell?") only when they are the whole text, a whole line, or the ``Question:`` segment, so that
a free-form prompt that merely contains such a phrase is not taken for the question.

When several questions match, the longest wins (a question can be a prefix of another); questions with
the same text (358 texts occur more than once) are told apart by their options: an option written as
``"X. option"`` scores 2, the option text alone 1; then fewer options absent from the text wins (a
question whose options are a subset of another's). Remaining ties go to the preferred ids (those with
recorded Qwen3 outputs), then to the lowest question id.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from itertools import accumulate, count
from operator import add

from workers.data.prompts import LETTERS

PREFIX_CHARS = 20

_QUESTION_SEGMENT = re.compile(r"Question:\s*(.+?)(?:\n\s*Options:|\Z)", re.DOTALL)
_LINE_LABEL = re.compile(r"^(?:question|q)\s*[:.]\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class MmluRecord:
    """One MMLU-Pro question (the gold answer is a letter)."""

    question_id: int
    question: str
    options: tuple[str, ...]
    answer: str
    category: str
    src: str


def normalize(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends."""
    return " ".join(text.split())


def _anchors(text: str) -> list[tuple[str, int]]:
    """(key, offset) for each space of ``text`` followed by at least PREFIX_CHARS - 1 more characters."""
    out = []
    s = text.find(" ")
    while 0 <= s <= len(text) - PREFIX_CHARS:
        out.append((text[s : s + PREFIX_CHARS], s))
        s = text.find(" ", s + 1)
    return out


class QuestionIndex:
    """Normalised question text → records, plus a prefix table for verbatim search inside longer text."""

    def __init__(self, records: Iterable[MmluRecord], preferred: Collection[int] = ()) -> None:
        self._by_text: dict[str, list[MmluRecord]] = {}
        for rec in records:
            self._by_text.setdefault(normalize(rec.question), []).append(rec)
        # verbatim search, anchored at spaces: each question is keyed by the PREFIX_CHARS characters from
        # one of its spaces on (the one whose key the fewest other questions share), with that space's
        # offset; a text can then contain the question only where one of its own spaces starts that key.
        # Questions with no such key (no space early enough) are few and checked with ``in``.
        anchors = {t: _anchors(t) for t in self._by_text if len(t) >= PREFIX_CHARS}
        shared: dict[str, int] = {}
        for keys in anchors.values():
            for key in {k for k, _ in keys}:
                shared[key] = shared.get(key, 0) + 1
        self._by_anchor: dict[str, list[tuple[str, int]]] = {}
        self._unanchored: list[str] = []
        for text, keys in anchors.items():
            if keys:
                key, offset = min(keys, key=lambda k: (shared[k[0]], k[1]))
                self._by_anchor.setdefault(key, []).append((text, offset))
            else:
                self._unanchored.append(text)
        self._preferred = frozenset(preferred)
        self._options: dict[int, tuple[tuple[str, str], ...]] = {
            rec.question_id: tuple(
                (f"{LETTERS[i]}. {normalize(opt)}", normalize(opt)) for i, opt in enumerate(rec.options)
            )
            for recs in self._by_text.values()
            for rec in recs
        }

    def __len__(self) -> int:
        return sum(len(recs) for recs in self._by_text.values())

    def find(self, text: str) -> MmluRecord | None:
        """The question `text` asks, or None when it contains no known question."""
        norm = normalize(text)
        if not norm:
            return None
        matches = self._exact_segments(text, norm)
        matches.update(self._verbatim(norm))
        if not matches:
            return None
        longest = max(len(q) for q in matches)
        candidates = [rec for q in matches if len(q) == longest for rec in self._by_text[q]]
        if len(candidates) == 1:
            return candidates[0]
        return max(candidates, key=lambda rec: self._rank(rec, norm))

    def _exact_segments(self, text: str, norm: str) -> set[str]:
        segments = {norm}
        match = _QUESTION_SEGMENT.search(text)
        if match:
            segments.add(normalize(match.group(1)))
        for line in text.splitlines():
            line_norm = normalize(line)
            if line_norm:
                segments.add(line_norm)
                segments.add(_LINE_LABEL.sub("", line_norm))
        return {seg for seg in segments if seg in self._by_text}

    def _verbatim(self, norm: str) -> set[str]:
        """Every question of at least PREFIX_CHARS characters that occurs anywhere in ``norm``.

        One dict look-up per space of ``norm`` (about one in six characters) instead of one per character:
        the per-character scan was half the replay server's CPU per request.
        """
        found = {q for q in self._unanchored if q in norm}
        by_anchor = self._by_anchor
        words = norm.split(" ")
        # the index of the space after each word but the last: cumulative word lengths + the spaces before
        for j in map(add, accumulate(map(len, words[:-1])), count()):
            hits = by_anchor.get(norm[j : j + PREFIX_CHARS])
            if hits:
                found.update(q for q, s in hits if j >= s and norm.startswith(q, j - s))
        return found

    def _rank(self, rec: MmluRecord, norm: str) -> tuple[int, int, bool, int]:
        score = missing = 0
        for lettered, bare in self._options[rec.question_id]:
            if lettered in norm:
                score += 2
            elif bare and bare in norm:
                score += 1
            else:
                missing += 1
        return score, -missing, rec.question_id in self._preferred, -rec.question_id
