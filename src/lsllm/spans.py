"""Word-level tags -> entity spans with character offsets, and a CoNLL-like word splitter."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from lsllm.data.iob import split_tag


@dataclass
class Entity:
    type: str
    text: str
    start: int  # char offset into the text, inclusive
    end: int  # char offset, exclusive
    score: float
    word_start: int  # word index, inclusive
    word_end: int  # word index, exclusive

    def to_dict(self) -> dict:
        return asdict(self)


def word_char_offsets(text: str, words: list[str]) -> list[tuple[int, int]]:
    """Locate each word in `text`, left to right, as [start, end) char offsets.

    Searching from the end of the previous word makes repeated words map to
    their own occurrence.
    """
    offsets = []
    cursor = 0
    for i, word in enumerate(words):
        start = text.find(word, cursor)
        if start < 0:
            raise ValueError(f"word {i} {word!r} not found in text after offset {cursor}")
        end = start + len(word)
        offsets.append((start, end))
        cursor = end
    return offsets


def tags_to_entities(
    words: list[str],
    tags: list[str],
    scores: list[float] | None,
    text: str | None = None,
) -> list[Entity]:
    """Group word tags into entities.

    Accepts IOB2, IOB1 (an I- after O or another type starts an entity), BIOES /
    BILOU, and bare tags ("PER": consecutive equal tags form one entity).
    An entity's score is the mean of its words' scores (1.0 when scores is None).
    """
    if len(tags) != len(words):
        raise ValueError(f"{len(words)} words but {len(tags)} tags")
    if scores is not None and len(scores) != len(words):
        raise ValueError(f"{len(words)} words but {len(scores)} scores")
    if text is None:
        text = " ".join(words)
    offsets = word_char_offsets(text, words)

    spans: list[tuple[str, int, int]] = []  # (type, word_start, word_end)
    current: list | None = None  # [type, word_start, word_end] of the open entity

    def close() -> None:
        nonlocal current
        if current is not None:
            spans.append((current[0], current[1], current[2]))
            current = None

    for i, tag in enumerate(tags):
        prefix, etype = split_tag(tag)
        if prefix == "O":
            close()
        elif prefix in ("B", "S", "U"):
            close()
            current = [etype, i, i + 1]
        elif current is not None and current[0] == etype:  # I / E / L continuing
            current[2] = i + 1
        else:  # I / E / L without a matching open entity starts one
            close()
            current = [etype, i, i + 1]
        if prefix in ("E", "L", "S", "U"):
            close()
    close()

    entities = []
    for etype, ws, we in spans:
        start, end = offsets[ws][0], offsets[we - 1][1]
        score = 1.0 if scores is None else sum(float(s) for s in scores[ws:we]) / (we - ws)
        entities.append(Entity(type=etype, text=text[start:end], start=start, end=end,
                               score=score, word_start=ws, word_end=we))
    return entities


# --------------------------------------------------------------------------
# split_words
# --------------------------------------------------------------------------

_LEADING = set("(\"'[{`“‘«¿¡")
_TRAILING = set(".,;:!?\"')]}”’»…")
# Abbreviations whose final period belongs to the word (CoNLL keeps "Mr.", "U.S.").
_ABBREVIATIONS = {
    "mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "sen.", "rep.", "gov.", "gen.",
    "col.", "lt.", "sgt.", "capt.", "rev.", "inc.", "ltd.", "co.", "corp.", "bros.", "plc.",
    "vs.", "etc.", "no.", "nos.", "vol.", "fig.", "approx.", "dept.", "est.", "mt.", "ft.",
    "jan.", "feb.", "mar.", "apr.", "jun.", "jul.", "aug.", "sep.", "sept.", "oct.", "nov.", "dec.",
}
# "U.S.", "e.g.", "a.m." and single capital initials like "J."
_DOTTED = re.compile(r"^(?:[A-Z]\.|(?:[^\W\d_]\.){2,})$")
# Clitics split off PTB/CoNLL style: "Germany's" -> "Germany" "'s", "don't" -> "do" "n't".
_CLITICS = ("n't", "'s", "'re", "'ve", "'ll", "'d", "'m")


def _is_abbreviation(word: str) -> bool:
    return word.lower() in _ABBREVIATIONS or bool(_DOTTED.match(word))


def _is_clitic(word: str) -> bool:
    return word.lower().replace("’", "'") in _CLITICS


def _split_clitic(word: str) -> list[str]:
    folded = word.lower().replace("’", "'")  # same length as word, so slicing lines up
    for clitic in _CLITICS:
        if folded.endswith(clitic) and len(word) > len(clitic):
            stem = word[: -len(clitic)]
            if stem[-1].isalnum():
                return [stem, word[-len(clitic):]]
    return [word]


def _split_chunk(chunk: str) -> list[str]:
    """Split one whitespace-free chunk into words, peeling punctuation off both ends."""
    lead: list[str] = []
    trail: list[str] = []
    while len(chunk) > 1 and chunk[0] in _LEADING and not _is_clitic(chunk):
        lead.append(chunk[0])
        chunk = chunk[1:]
    while len(chunk) > 1:
        last = chunk[-1]
        if last == ".":
            if _is_abbreviation(chunk):
                break
            dots = len(chunk) - len(chunk.rstrip("."))
            if dots == len(chunk):  # the chunk is just "..."
                break
            trail.append(chunk[-dots:])  # "." or an ellipsis "..." as one word
            chunk = chunk[:-dots]
        elif last in _TRAILING and not _is_clitic(chunk):
            trail.append(last)
            chunk = chunk[:-1]
        else:
            break
    return lead + _split_clitic(chunk) + trail[::-1]


def split_words(text: str) -> list[str]:
    """Tokenise raw text into words the way CoNLL-style NER data is tokenised.

    Every returned word is a substring of `text`, in order, so
    `word_char_offsets(text, split_words(text))` always succeeds.
    """
    words: list[str] = []
    for chunk in text.split():
        words.extend(_split_chunk(chunk))
    return words
