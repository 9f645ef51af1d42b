"""Prompting baselines: label scoring, generation, prompt building, NER output parsing, instruct features."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig

import lsllm.prompting as prompting
from lsllm.data.labels import LabelSet
from lsllm.data.records import SeqExample, TokenExample
from lsllm.model.build import load_tokenizer
from lsllm.data.encode import IGNORE_INDEX
from lsllm.prompting import (DEFAULT_TEMPLATE, INVALID, NER_TEMPLATE, PromptConfig, build_answers,
                             build_prompts, collate_instruct, continuation_ids, entities_to_tags, generate_labels,
                             generate_texts, instruct_features, label_log_likelihoods, load_prompt_config, match_label,
                             parse_entities, parse_label_names, predict_zero_shot, score_labels, select_shots)
from conftest import DECODER_FAMILIES

PROMPTS = [
    "the movie was good . it is ",
    "a bad film with an awful plot and a dull actor , the market falls down in london . it is ",
    "john said : ",
    "i love paris and new york city , the film was fun and the actor was great . the plot was boring",
    "he ",
]
# "good" is a prefix of "good movie"; several labels span more than one token.
LABELS = ["good", "good movie", "bad film plot", "fun", "awful"]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|> {% endif %}")


@pytest.fixture(scope="module")
def tok(tiny_models):
    # Every tiny family shares this word-level vocabulary; the llama folder loads it as-is
    # (other families' tokenizer classes rebuild it as something else).
    return load_tokenizer(str(tiny_models["llama"]))


@pytest.fixture(scope="module")
def llama(tiny_models):
    return AutoModelForCausalLM.from_pretrained(tiny_models["llama"]).eval()


def reference_log_likelihoods(model, tokenizer, prompts, labels) -> torch.Tensor:
    """Brute force: each prompt+label alone, unpadded, full logits, label = suffix after the common prefix."""
    out = torch.empty(len(prompts), len(labels), dtype=torch.float64)
    for i, prompt in enumerate(prompts):
        prompt_ids = tokenizer(prompt)["input_ids"]
        for j, label in enumerate(labels):
            ids = tokenizer(prompt + label)["input_ids"]
            start = 0
            while start < len(prompt_ids) and prompt_ids[start] == ids[start]:
                start += 1
            with torch.no_grad():
                log_probs = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
            out[i, j] = sum(log_probs[t - 1, ids[t]].item() for t in range(start, len(ids)))
    return out


# --------------------------------------------------------------------------
# Label scoring
# --------------------------------------------------------------------------

@pytest.mark.parametrize("family", DECODER_FAMILIES)
def test_label_scores_match_unbatched_reference(tiny_models, tok, family):
    model = AutoModelForCausalLM.from_pretrained(tiny_models[family]).eval()
    expected = reference_log_likelihoods(model, tok, PROMPTS, LABELS)
    for batch_size in (1, 2, 8):  # 2: prompts of different lengths share a padded batch
        got = label_log_likelihoods(model, tok, PROMPTS, LABELS, batch_size=batch_size)
        assert got.shape == (len(PROMPTS), len(LABELS))
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_probabilities_sum_to_one_and_prefix_labels_score_every_token(llama, tok):
    probs = score_labels(llama, tok, PROMPTS, LABELS, batch_size=3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(len(PROMPTS), dtype=probs.dtype))
    assert (probs > 0).all()
    # log P("good movie") = log P("good") + log P(" movie" | "good"): the longer label is not cut short.
    whole = label_log_likelihoods(llama, tok, PROMPTS, ["good movie", "good"])
    rest = label_log_likelihoods(llama, tok, [p + "good" for p in PROMPTS], [" movie"])
    torch.testing.assert_close(whole[:, 0], whole[:, 1] + rest[:, 0], atol=1e-4, rtol=0)
    assert (whole[:, 0] < whole[:, 1]).all()


def test_scoring_mid_training_uses_eval_mode_and_restores_it(llama, tok):
    expected = label_log_likelihoods(llama, tok, PROMPTS[:2], LABELS)
    attention = [m for m in llama.modules() if hasattr(m, "attention_dropout")]
    assert attention
    for module in attention:
        module.attention_dropout = 0.5  # would randomise scores if dropout were on
    llama.train()
    try:
        torch.testing.assert_close(label_log_likelihoods(llama, tok, PROMPTS[:2], LABELS), expected)
        assert llama.training
    finally:
        for module in attention:
            module.attention_dropout = 0.0
        llama.eval()


def test_bpe_boundary_and_prefix_labels_with_a_real_tokenizer(smollm2):
    bpe = load_tokenizer(smollm2)
    names = lambda ids: bpe.convert_ids_to_tokens(ids)  # noqa: E731
    # "Output: " alone ends in a lone space token; with the label the space merges into it.
    assert names(bpe("### Output: ")["input_ids"])[-1] == "Ġ"
    for label in ("pos", "positive"):
        ids, start = continuation_ids(bpe, "### Output: ", label)
        assert names(ids[start:]) == ["Ġ" + label]
        assert names(ids[:start])[-1] == ":"
    # A tiny random model over the real vocabulary: scores still equal the brute-force reference.
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(bpe), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    model = AutoModelForCausalLM.from_config(config).eval()
    labels = LabelSet(["neg", "pos"])
    examples = [SeqExample("Great fun."), SeqExample("A long, dull and badly acted film that I did not enjoy.")]
    labels_text = ["pos", "positive", "neg", "negative"]
    for chat in (True, False):
        prompts = build_prompts(examples, labels, PromptConfig(use_chat_template=chat), bpe)
        got = label_log_likelihoods(model, bpe, prompts, labels_text, batch_size=2)
        torch.testing.assert_close(got, reference_log_likelihoods(model, bpe, prompts, labels_text),
                                   atol=1e-4, rtol=0)


# --------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------

def test_batched_generation_equals_one_at_a_time(llama, tok):
    alone = generate_texts(llama, tok, PROMPTS, max_new_tokens=6, batch_size=1)
    batched = generate_texts(llama, tok, PROMPTS, max_new_tokens=6, batch_size=3)
    assert batched == alone
    assert all(isinstance(text, str) for text in alone)
    matched, raw = generate_labels(llama, tok, PROMPTS, ["good", "bad"], max_new_tokens=4)
    assert len(matched) == len(raw) == len(PROMPTS)
    assert all(m is None or m in ("good", "bad") for m in matched)


@pytest.mark.parametrize("output,expected", [
    ("positive", "positive"),
    ("  Positive.\nBecause the article is upbeat", "positive"),
    ('"negative"', "negative"),
    ("pos", None),  # exact match only: a prefix of a label is not that label
    ("The label is positive", None),
    ("", None),
])
def test_match_label(output, expected):
    assert match_label(output, ["negative", "positive"]) == expected


# --------------------------------------------------------------------------
# Instruction-tuning features
# --------------------------------------------------------------------------

def test_instruct_features_put_the_loss_on_the_answer_only(tok):
    prompt, answer = "the movie was good ### Output: ", "good movie"
    prompt_ids = tok(prompt)["input_ids"]
    answer_ids = tok("good movie")["input_ids"]
    features = instruct_features(tok, prompt, answer, max_length=64)
    assert features["input_ids"] == prompt_ids + answer_ids + [tok.eos_token_id]
    assert features["labels"] == [IGNORE_INDEX] * len(prompt_ids) + answer_ids + [tok.eos_token_id]
    assert features["attention_mask"] == [1] * len(features["input_ids"])

    # Too long: the prompt loses tokens from its start; the answer and EOS stay supervised.
    short = instruct_features(tok, prompt, answer, max_length=5)
    assert len(short["input_ids"]) == 5
    assert short["labels"] == [IGNORE_INDEX] * 2 + answer_ids + [tok.eos_token_id]
    assert short["input_ids"][-3:] == answer_ids + [tok.eos_token_id]
    with pytest.raises(ValueError, match="no room"):
        instruct_features(tok, prompt, answer, max_length=3)

    batch = collate_instruct([features, short], pad_token_id=tok.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape == (2, len(features["input_ids"]))
    assert batch["attention_mask"][1].tolist() == [1] * 5 + [0] * (len(features["input_ids"]) - 5)
    assert (batch["labels"][1, 5:] == IGNORE_INDEX).all()


def test_instruct_features_with_bpe_merge_at_the_boundary(smollm2):
    bpe = load_tokenizer(smollm2)
    features = instruct_features(bpe, "### Output: ", "positive", max_length=32)
    supervised = [i for i, label in zip(features["input_ids"], features["labels"]) if label != IGNORE_INDEX]
    assert bpe.convert_ids_to_tokens(supervised) == ["Ġpositive", bpe.eos_token]
    assert bpe.convert_ids_to_tokens(features["input_ids"])[-3] == ":"  # no stray space token before the answer


# --------------------------------------------------------------------------
# NER output parsing
# --------------------------------------------------------------------------

TYPES = ["PER", "LOC", "ORG"]


@pytest.mark.parametrize("output,expected", [
    ("PER: John Smith; LOC: Paris", [("PER", "John Smith"), ("LOC", "Paris")]),
    ("per:John Smith ;  loc : Paris.", [("PER", "John Smith"), ("LOC", "Paris")]),
    ("PER: John Smith\nLOC: Paris\n", [("PER", "John Smith"), ("LOC", "Paris")]),
    ("- PER: John\n- ORG: Google", [("PER", "John"), ("ORG", "Google")]),
    ("PER: John, LOC: Paris", [("PER", "John"), ("LOC", "Paris")]),
    ("LOC: Washington, D.C.; ORG: U.S.", [("LOC", "Washington, D.C."), ("ORG", "U.S.")]),
    ('ORG: "Google"!', [("ORG", "Google")]),
    ("Output: PER: John", [("PER", "John")]),
    ("PER: John; FOO: bar", [("PER", "John")]),  # an unknown type is dropped, the rest kept
    ("PER: John ### Input sentence: LOC: Paris", [("PER", "John")]),  # a base model running on
    ("none", []),
    ("None.", []),
    ("  NONE \n", []),
    ("", None),
    ("I could not find any entities here", None),  # garbage
    ("PER John Smith", None),  # missing colon
    ("FOO: bar", None),  # only unknown types
    ("PER: ", None),  # empty span
])
def test_parse_entities(output, expected):
    assert parse_entities(output, TYPES) == expected


def test_entities_to_tags_with_repeated_words():
    words = "John met John Smith in Paris , then John Smith left Paris .".split()
    entities = [("PER", "John Smith"), ("PER", "John"), ("LOC", "Paris"), ("PER", "John Smith"),
                ("LOC", "Paris."), ("ORG", "Google"), ("PER", "john")]
    tags = entities_to_tags(words, entities)
    assert tags == ["B-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "O", "O", "B-PER", "I-PER", "O", "B-LOC", "O"]
    # Spans are matched left to right on words not yet tagged; a span that isn't there is ignored.
    assert entities_to_tags(["a", "b"], [("PER", "c d")]) == ["O", "O"]
    assert entities_to_tags(words, [("PER", "john smith")])[2:4] == ["B-PER", "I-PER"]  # case as a fallback


# --------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------

SEQ_LABELS = LabelSet(["0", "1"])
TRAIN = [SeqExample(f"the movie was good {i}", "1") for i in range(5)] + \
        [SeqExample(f"the film was bad {i}", "0") for i in range(5)]


def test_prompt_has_label_names_and_text(tok):
    config = PromptConfig(label_names={"0": "negative", "1": "positive"})
    [prompt] = build_prompts([SeqExample("a fun movie")], SEQ_LABELS, config, tok)
    assert prompt == DEFAULT_TEMPLATE.replace("{labels}", "negative, positive").replace("{text}", "a fun movie")
    assert prompting.shown_labels(SEQ_LABELS, PromptConfig()) == ["0", "1"]
    with pytest.raises(ValueError, match="distinct"):
        prompting.shown_labels(SEQ_LABELS, PromptConfig(label_names={"0": "same", "1": "Same"}))


def test_chat_template_is_used_when_present(tok):
    chat_tok = load_tokenizer(tok.name_or_path)
    chat_tok.chat_template = CHAT_TEMPLATE
    example = [SeqExample("a fun movie")]
    [prompt] = build_prompts(example, SEQ_LABELS, PromptConfig(), chat_tok)
    assert prompt.startswith("<|user|> You are a classification model.")
    assert prompt.endswith("### Output: \n<|assistant|> ")
    [plain] = build_prompts(example, SEQ_LABELS, PromptConfig(use_chat_template=False), chat_tok)
    assert plain.startswith("You are") and plain.endswith("### Output: ")


def test_few_shot_examples_are_included_stratified_and_seeded(tok):
    shots = select_shots(TRAIN, 2, seed=0)
    assert sorted(s.label for s in shots) == ["0", "1"]  # one per label
    assert select_shots(TRAIN, 2, seed=0) == shots
    assert len({tuple(s.text for s in select_shots(TRAIN, 4, seed)) for seed in range(6)}) > 1
    assert len(select_shots(TRAIN, 50, seed=0)) == len(TRAIN)
    assert [s.label for s in select_shots(TRAIN, 4, seed=3)].count("0") == 2

    config = PromptConfig(label_names={"0": "negative", "1": "positive"}, k_shot=2)
    [prompt] = build_prompts([SeqExample("query text")], SEQ_LABELS, config, tok, shots)
    blocks = prompt.split("\n\n")
    assert len(blocks) == 3 and blocks[2].endswith("query text ### Output: ")
    for block, shot in zip(blocks, shots):
        answer = {"0": "negative", "1": "positive"}[shot.label]
        assert block.endswith(f"{shot.text} ### Output: {answer}")

    chat_tok = load_tokenizer(tok.name_or_path)
    chat_tok.chat_template = CHAT_TEMPLATE
    [chat] = build_prompts([SeqExample("query text")], SEQ_LABELS, config, chat_tok, shots)
    assert chat.count("<|user|>") == 3 and chat.count("<|assistant|>") == 3  # 2 answered shots + the query
    assert f"<|assistant|> {'positive' if shots[0].label == '1' else 'negative'}\n" in chat


def test_article_text_is_truncated_to_fit(tok):
    long_text = " ".join(["the good movie was fun"] * 40)  # 200 words
    config = PromptConfig(template="label from {labels} : {text} ### Output: ", max_length=30)
    [prompt] = build_prompts([SeqExample(long_text)], SEQ_LABELS, config, tok)
    assert len(tok(prompt)["input_ids"]) + 2 <= 30  # room for the longest label (1 token) + 1
    assert prompt.endswith(" ### Output: ")
    kept = prompt[len("label from 0, 1 : "):-len(" ### Output: ")]
    assert kept and long_text.startswith(kept)
    # Shots share the budget but the query still gets text.
    [with_shots] = build_prompts([SeqExample(long_text)], SEQ_LABELS, PromptConfig(
        template=config.template, max_length=60, k_shot=2), tok, [SeqExample(long_text, "0")] * 2)
    assert len(tok(with_shots)["input_ids"]) + 2 <= 60
    assert with_shots.split("\n\n")[-1] != "label from 0, 1 :  ### Output: "
    with pytest.raises(ValueError, match="max_length"):
        build_prompts([SeqExample("x")], SEQ_LABELS, PromptConfig(max_length=10), tok)


def test_token_examples_get_the_ner_template_and_entity_answers(tok):
    labels = LabelSet(["O", "B-LOC", "I-LOC", "B-PER", "I-PER"])
    example = TokenExample(["john", "said", "in", "new", "york"], ["B-PER", "O", "O", "B-LOC", "I-LOC"])
    config = PromptConfig(label_names={"PER": "person", "LOC": "location"})
    [prompt] = build_prompts([example], labels, config, tok)
    assert prompt == NER_TEMPLATE.replace("{labels}", "location, person").replace("{text}", "john said in new york")
    assert build_answers([example, TokenExample(["hi"], ["O"])], labels, config) == \
        ["person: john; location: new york", "none"]


def test_prompt_config_from_yaml_and_label_name_specs(tmp_path):
    assert parse_label_names("0=bearish, 1=bullish,2=neutral") == {"0": "bearish", "1": "bullish", "2": "neutral"}
    assert parse_label_names("") == {}
    for bad in ("0bearish", "0=", "=x", "0=a,0=b"):
        with pytest.raises(ValueError):
            parse_label_names(bad)
    path = tmp_path / "prompt.yaml"
    path.write_text("template: 'Sentiment of {text}? Options: {labels}. Answer: '\n"
                    "label_names: {0: bearish, 1: bullish}\nk_shot: 4\nuse_chat_template: false\n")
    config = load_prompt_config(path)
    assert config == PromptConfig(template="Sentiment of {text}? Options: {labels}. Answer: ",
                                  label_names={"0": "bearish", "1": "bullish"}, k_shot=4, use_chat_template=False)
    path.write_text("label_names: '0=bearish,1=bullish'\n")
    assert load_prompt_config(path).label_names == {"0": "bearish", "1": "bullish"}
    path.write_text("templat: oops\n")
    with pytest.raises(ValueError, match="unknown prompt settings templat"):
        load_prompt_config(path)
    with pytest.raises(ValueError, match=r"\{text\}"):
        PromptConfig(template="no placeholder")
    path.write_text("k_shot: four\n")
    with pytest.raises(ValueError, match="k_shot must be int"):
        load_prompt_config(path)


# --------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------

def test_predict_zero_shot_scores_sequences(llama, tok):
    examples = [SeqExample("a good movie"), SeqExample("a bad film"), SeqExample("boring plot")]
    config = PromptConfig(label_names={"0": "bad film", "1": "good"})
    result = predict_zero_shot(llama, tok, examples, SEQ_LABELS, config, batch_size=2)
    assert result.invalid == 0 and len(result.predictions) == 3
    assert set(result.predictions) <= {"0", "1"}
    for row, predicted in zip(result.probabilities, result.predictions):
        assert sum(row) == pytest.approx(1.0)
        assert SEQ_LABELS.names[int(row.argmax())] == predicted
    few = predict_zero_shot(llama, tok, examples, SEQ_LABELS, PromptConfig(k_shot=2), train_examples=TRAIN)
    assert len(few.predictions) == 3
    with pytest.raises(ValueError, match="training examples"):
        predict_zero_shot(llama, tok, examples, SEQ_LABELS, PromptConfig(k_shot=2))


def test_predict_zero_shot_generate_maps_outputs(monkeypatch, llama, tok):
    outputs = iter([["positive", " Negative.\nmore", "maybe"]])
    monkeypatch.setattr(prompting.generation, "generate_texts", lambda *args: next(outputs))
    examples = [SeqExample("a"), SeqExample("b"), SeqExample("c")]
    config = PromptConfig(label_names={"0": "negative", "1": "positive"})
    result = predict_zero_shot(llama, tok, examples, SEQ_LABELS, config, mode="generate")
    assert result.predictions == ["1", "0", INVALID]
    assert result.invalid == 1 and result.raw[2] == "maybe"


@pytest.mark.parametrize("tagset", ["bio", "plain"])
def test_predict_zero_shot_tags_sentences(monkeypatch, llama, tok, tagset):
    outputs = iter([["person: john; location: new york", "garbage", "none", "location: paris; person: nobody"]])
    monkeypatch.setattr(prompting.predict, "generate_texts", lambda *args: next(outputs))
    names = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"] if tagset == "bio" else ["O", "LOC", "PER"]
    sentences = [["john", "said", "in", "new", "york"], ["mary", "said"], ["it", "is"], ["in", "paris"]]
    config = PromptConfig(label_names={"PER": "person", "LOC": "location"})
    result = predict_zero_shot(llama, tok, [TokenExample(s) for s in sentences], LabelSet(names), config)
    expected = [["B-PER", "O", "O", "B-LOC", "I-LOC"], ["O", "O"], ["O", "O"], ["O", "B-LOC"]]
    if tagset == "plain":
        expected = [[t if t == "O" else t[2:] for t in tags] for tags in expected]
    assert result.predictions == expected
    assert result.invalid == 1 and len(result.raw) == 4


# --------------------------------------------------------------------------
# The real SmolLM2
# --------------------------------------------------------------------------

SENTIMENT = [
    ("I loved this movie, it was wonderful and moving.", "1"),
    ("What a fantastic film! The acting was brilliant.", "1"),
    ("An absolute delight from start to finish. Highly recommended.", "1"),
    ("This is the best meal I have ever had, truly excellent.", "1"),
    ("I hated this movie. It was boring and terrible.", "0"),
    ("The worst film I have ever seen, a complete waste of time.", "0"),
    ("Awful service and disgusting food. Never again.", "0"),
    ("The plot was dull and the acting was horrible.", "0"),
]
SENTIMENT_TRAIN = [
    SeqExample("A charming, funny and heartfelt story.", "1"),
    SeqExample("Great value and friendly staff, I will come back.", "1"),
    SeqExample("Cold food, rude waiter, and a long wait.", "0"),
    SeqExample("A tedious mess with nothing to say.", "0"),
]


@pytest.mark.slow
def test_smollm2_zero_and_few_shot_sentiment(smollm2):
    tokenizer = load_tokenizer(smollm2)
    model = AutoModelForCausalLM.from_pretrained(smollm2).eval()
    examples = [SeqExample(text, label) for text, label in SENTIMENT]
    names = {"0": "negative", "1": "positive"}

    zero = predict_zero_shot(model, tokenizer, examples, SEQ_LABELS, PromptConfig(label_names=names))
    assert zero.invalid == 0 and set(zero.predictions) <= {"0", "1"}
    p_positive = torch.tensor(np.array(zero.probabilities))[:, 1]
    assert torch.tensor(np.array(zero.probabilities)).sum(-1).tolist() == pytest.approx([1.0] * 8)
    # A 135M model is biased towards one label zero-shot, but it must rank positive texts above negative ones.
    assert p_positive[:4].mean() > p_positive[4:].mean()

    few = predict_zero_shot(model, tokenizer, examples, SEQ_LABELS,
                            PromptConfig(label_names=names, k_shot=4, use_chat_template=False),
                            train_examples=SENTIMENT_TRAIN)
    correct = sum(p == e.label for p, e in zip(few.predictions, examples))
    assert correct >= 6, few
