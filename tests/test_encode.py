"""Binding records to tokenizers: first-sub-token labels, windows that drop no word, batching."""
import random

import numpy as np
import pytest

from lsllm.data.encode import (IGNORE_INDEX, collate, encode_seq, encode_tokens, length_grouped_batches,
                               sorted_batches, special_tokens, token_budget_batches, word_scores)
from lsllm.data.labels import LabelSet
from lsllm.data.records import SeqExample, TokenExample
from lsllm.model.build import load_tokenizer
from lsllm.model.sources import alias_installed, resolve_source

TAGS = LabelSet(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"])


@pytest.fixture(scope="module", params=["minilm-l6", "smollm2-135m"])
def tokenizer(request):
    if not alias_installed(request.param):
        pytest.skip(f"{request.param} is not installed")
    return load_tokenizer(resolve_source(request.param))


def test_every_word_gets_exactly_one_labelled_first_subtoken(tokenizer):
    words = ["Angela", "Merkel", "visited", "Kyiv-Pechersk", "Lavra", "in", "Ukraine", "."]
    tags = ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-LOC", "O"]
    [f] = encode_tokens([TokenExample(words, tags)], tokenizer, TAGS, max_length=64)
    labelled = [(p, w) for p, w in enumerate(f.word_ids) if w >= 0]
    assert [w for _, w in labelled] == list(range(len(words)))
    assert [TAGS.names[f.labels[p]] for p, _ in labelled] == tags
    assert sum(label != IGNORE_INDEX for label in f.labels) == len(words)
    prefix, suffix = special_tokens(tokenizer)
    assert f.input_ids[:len(prefix)] == prefix and f.input_ids[len(f.input_ids) - len(suffix):] == suffix


def test_all_subtokens_option_labels_continuations(tokenizer):
    words = ["Kyiv-Pechersk", "Lavra"]
    [first] = encode_tokens([TokenExample(words, ["B-LOC", "I-LOC"])], tokenizer, TAGS, 64)
    [every] = encode_tokens([TokenExample(words, ["B-LOC", "I-LOC"])], tokenizer, TAGS, 64, label_all_subtokens=True)
    assert sum(x != IGNORE_INDEX for x in every.labels) > sum(x != IGNORE_INDEX for x in first.labels) == 2


def test_long_sentences_are_windowed_and_no_word_is_dropped(tokenizer):
    words = [f"word{i}" if i % 7 else "Paris" for i in range(300)]
    example = TokenExample(words, ["B-LOC" if w == "Paris" else "O" for w in words])
    features = encode_tokens([example], tokenizer, TAGS, max_length=32)
    assert len(features) > 10 and all(len(f.input_ids) <= 32 for f in features)
    # Fake model: score each position with a one-hot of its own label, so the word read back must match.
    scores = [np.eye(len(TAGS))[[max(label, 0) for label in f.labels]] for f in features]
    [per_word] = word_scores(features, scores, 1, [len(words)])
    assert per_word.shape == (300, len(TAGS))
    assert [TAGS.names[k] for k in per_word.argmax(-1)] == example.tags


def test_word_read_from_the_most_central_window():
    from lsllm.data.encode import Feature
    f1 = Feature([1, 2, 3, 4], [0] * 4, 0, word_ids=[0, 1, 2, 3])
    f2 = Feature([3, 4, 5, 6], [0] * 4, 0, word_ids=[2, 3, 4, 5])
    s1, s2 = np.full((4, 2), [1.0, 0.0]), np.full((4, 2), [0.0, 1.0])
    [words] = word_scores([f1, f2], [s1, s2], 1, [6])
    # word 2 sits at an edge of f2 (position 0) but inside f1 (position 2 of 0..3): f1 wins
    assert words[2].tolist() == [1.0, 0.0] and words[4].tolist() == [0.0, 1.0]


def test_sequence_truncation_and_pairs(tokenizer):
    labels = LabelSet(["neg", "pos"])
    long = SeqExample(" ".join(["great"] * 500), "pos")
    pair = SeqExample("Stocks rally", "pos", text_pair="Markets rose on Friday.")
    f_long, f_pair = encode_seq([long, pair], tokenizer, labels, max_length=40)
    assert len(f_long.input_ids) == 40 and f_long.labels == 1
    decoded = tokenizer.decode(f_pair.input_ids)
    assert "rally" in decoded.lower() and "friday" in decoded.lower()


def test_collate_pads_dynamically():
    from lsllm.data.encode import Feature
    batch = collate([Feature([5, 6, 7], 1, 0), Feature([8], 0, 1)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    tokens = collate([Feature([5, 6], [1, IGNORE_INDEX], 0), Feature([8], [2], 1)], pad_id=0)
    assert tokens["labels"].tolist() == [[1, IGNORE_INDEX], [2, IGNORE_INDEX]]


def test_length_grouped_batches_are_a_seeded_permutation():
    lengths = [((i * 37) % 50) + 1 for i in range(200)]
    a = length_grouped_batches(lengths, 8, seed=3, group=4)
    assert a == length_grouped_batches(lengths, 8, seed=3, group=4)
    assert a != length_grouped_batches(lengths, 8, seed=4, group=4)
    assert sorted(i for b in a for i in b) == list(range(200))
    def spread(batches):
        return np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches])
    unsorted = [list(range(200))[k:k + 8] for k in range(0, 200, 8)]
    assert spread(a) < 0.4 * spread(unsorted)  # similar lengths share a batch
    s = sorted_batches(lengths, 16)
    assert sorted(i for b in s for i in b) == list(range(200))


def test_token_budget_batches_fit_the_budget_and_cover_every_example_once():
    rng = random.Random(0)
    lengths = [rng.randint(3, 40) for _ in range(500)] + [300]  # one example longer than the budget
    batches = token_budget_batches(lengths, 256, seed=1)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) * max(lengths[i] for i in b) <= 256 or len(b) == 1 for b in batches)
    assert batches == token_budget_batches(lengths, 256, seed=1) != token_budget_batches(lengths, 256, seed=2)
    short = token_budget_batches([10] * 100, 256, seed=0)
    assert [len(b) for b in short].count(25) == 4  # short texts: many rows per batch
    assert token_budget_batches([], 256, seed=0) == []
