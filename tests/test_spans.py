import pytest

from lsllm.spans import Entity, split_words, tags_to_entities, word_char_offsets


def test_word_char_offsets_repeated_words_and_punctuation():
    text = "the cat saw the cat."
    words = ["the", "cat", "saw", "the", "cat", "."]
    assert word_char_offsets(text, words) == [(0, 3), (4, 7), (8, 11), (12, 15), (16, 19), (19, 20)]


def test_word_char_offsets_missing_word_raises():
    with pytest.raises(ValueError):
        word_char_offsets("a b", ["a", "c"])
    with pytest.raises(ValueError):  # order matters: "a" is not found after "b"
        word_char_offsets("a b", ["b", "a"])


def test_entities_offsets_with_punctuation_and_repeats():
    text = "Paris, France. Paris again!"
    words = split_words(text)
    assert words == ["Paris", ",", "France", ".", "Paris", "again", "!"]
    tags = ["B-LOC", "O", "B-LOC", "O", "B-LOC", "O", "O"]
    ents = tags_to_entities(words, tags, None, text)
    assert [(e.type, e.text, e.start, e.end, e.word_start, e.word_end) for e in ents] == [
        ("LOC", "Paris", 0, 5, 0, 1),
        ("LOC", "France", 7, 13, 2, 3),
        ("LOC", "Paris", 15, 20, 4, 5),
    ]
    assert all(e.score == 1.0 for e in ents)


def test_multiword_entities_and_scores():
    text = "U.S. President Joe Biden visited New  York."
    words = split_words(text)
    assert words == ["U.S.", "President", "Joe", "Biden", "visited", "New", "York", "."]
    tags = ["B-LOC", "O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O"]
    scores = [0.9, 0.8, 0.9, 0.7, 0.99, 0.6, 0.8, 0.9]
    ents = tags_to_entities(words, tags, scores, text)
    assert [(e.type, e.text, e.start, e.end) for e in ents] == [
        ("LOC", "U.S.", 0, 4),
        ("PER", "Joe Biden", 15, 24),
        ("LOC", "New  York", 33, 42),  # original spacing kept
    ]
    assert ents[1].score == pytest.approx(0.8)
    assert ents[2].score == pytest.approx(0.7)
    assert ents[1].to_dict() == {"type": "PER", "text": "Joe Biden", "start": 15, "end": 24,
                                 "score": pytest.approx(0.8), "word_start": 2, "word_end": 4}


def test_text_none_joins_words():
    ents = tags_to_entities(["Angela", "Merkel", "spoke"], ["B-PER", "I-PER", "O"], [1.0, 0.5, 0.1])
    assert ents == [Entity("PER", "Angela Merkel", 0, 13, 0.75, 0, 2)]


def _spans(tags):
    words = [f"w{i}" for i in range(len(tags))]
    return [(e.type, e.word_start, e.word_end) for e in tags_to_entities(words, tags, None)]


def test_tag_schemes():
    assert _spans(["B-PER", "I-PER", "B-PER", "O"]) == [("PER", 0, 2), ("PER", 2, 3)]
    assert _spans(["I-PER", "I-PER", "O", "I-LOC"]) == [("PER", 0, 2), ("LOC", 3, 4)]  # IOB1
    assert _spans(["B-PER", "I-LOC", "I-LOC"]) == [("PER", 0, 1), ("LOC", 1, 3)]  # type change
    assert _spans(["PER", "PER", "O", "LOC", "ORG"]) == [("PER", 0, 2), ("LOC", 3, 4), ("ORG", 4, 5)]
    assert _spans(["S-PER", "B-LOC", "E-LOC", "B-LOC", "I-LOC", "E-LOC"]) == [
        ("PER", 0, 1), ("LOC", 1, 3), ("LOC", 3, 6)]
    assert _spans(["O", "O"]) == []
    assert _spans(["I-MISC"]) == [("MISC", 0, 1)]
    assert _spans(["B-DATE-TIME", "I-DATE-TIME"]) == [("DATE-TIME", 0, 2)]  # hyphen inside type


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        tags_to_entities(["a", "b"], ["O"], None)
    with pytest.raises(ValueError):
        tags_to_entities(["a"], ["O"], [0.1, 0.2])


@pytest.mark.parametrize("text, expected", [
    ("Paris.", ["Paris", "."]),
    ("I live in the U.S.", ["I", "live", "in", "the", "U.S."]),
    ("It costs $5.00.", ["It", "costs", "$5.00", "."]),
    ("I don't know.", ["I", "do", "n't", "know", "."]),
    ("Germany's chancellor", ["Germany", "'s", "chancellor"]),
    ("Germany’s chancellor", ["Germany", "’s", "chancellor"]),
    ("Germany 's chancellor", ["Germany", "'s", "chancellor"]),
    ('("Hello," she said.)', ["(", '"', "Hello", ",", '"', "she", "said", ".", ")"]),
    ("Wait... what?!", ["Wait", "...", "what", "?", "!"]),
    ("Mr. Smith met Dr. J. Doe, e.g. today", ["Mr.", "Smith", "met", "Dr.", "J.", "Doe", ",", "e.g.", "today"]),
    ("1,000 people; 3.5% growth: fine", ["1,000", "people", ";", "3.5%", "growth", ":", "fine"]),
    ("state-of-the-art (U.S.),", ["state-of-the-art", "(", "U.S.", ")", ","]),
    ("O'Neil's dog", ["O'Neil", "'s", "dog"]),
    ("  spaced \t out\n", ["spaced", "out"]),
    ("", []),
    ("...", ["..."]),
])
def test_split_words(text, expected):
    words = split_words(text)
    assert words == expected
    word_char_offsets(text, words)  # every word is locatable in order


def test_split_words_roundtrip_offsets():
    text = 'EU rejects German call to boycott British lamb. "Peter Blackburn" (BRUSSELS 1996-08-22)'
    words = split_words(text)
    for (start, end), word in zip(word_char_offsets(text, words), words):
        assert text[start:end] == word
    assert words[:8] == ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb"]
    assert words[-4:] == ["(", "BRUSSELS", "1996-08-22", ")"]
