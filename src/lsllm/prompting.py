"""Prompting baselines from the LS-LLaMA paper: zero-shot, few-shot (in-context) and instruction tuning.

A prompt is a template filled with the article (or sentence) and the label names. A causal LM then
either *scores* every label as a continuation of the prompt (the label with the highest likelihood
wins) or *generates* freely and the output is matched against the labels. Token tagging (NER) always
generates: the model lists "type: span; type: span" and the spans are mapped back onto the words.

`instruct_features` turns a prompt and its answer into a training example whose loss covers only
the answer, for instruction tuning of the same causal LM.
"""
from __future__ import annotations

import inspect
import random
import re
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Literal

import torch
import yaml

from lsllm.errors import ConfigError
from lsllm.data.labels import LabelSet, entity_types
from lsllm.data.records import SeqExample, TokenExample
from lsllm.spans import split_words, tags_to_entities


DEFAULT_TEMPLATE = (
    "You are a classification model. Based on the given article, you need to predict the most relevant "
    "category label from {labels}. One article has only one label. ### Input article: {text} ### Output: "
)
NER_TEMPLATE = (
    "You are a named entity recognition model. List every named entity in the given sentence as "
    "'type: entity', separated by '; ', with types from {labels}. Copy each entity exactly as it is written "
    "in the sentence. If there is no entity, answer 'none'. ### Input sentence: {text} ### Output: "
)
INVALID = "<invalid>"
"""Prediction for a generated output that matches no label; it is never a label, so it scores as wrong."""
IGNORE_INDEX = -100
"""Label id that the causal-LM loss skips."""

_PLACEHOLDER = re.compile(r"\{(labels|text)\}")


@dataclass
class PromptConfig:
    template: str = DEFAULT_TEMPLATE
    """Must contain {text}; {labels} becomes the comma-separated label names. For token tagging the
    default template is swapped for NER_TEMPLATE."""
    label_names: dict[str, str] | None = None
    """label (or entity type) -> natural-language name, e.g. {"0": "bearish", "1": "bullish"}."""
    use_chat_template: bool = True
    """Wrap the prompt as a user turn when the tokenizer has a chat template."""
    k_shot: int = 0
    """Few-shot examples drawn from the training split (stratified over labels, seeded)."""
    seed: int = 0
    max_length: int = 512
    """Token budget for the prompt plus the longest label; the article text is cut to fit."""

    def __post_init__(self) -> None:
        # Values often come from a hand-edited YAML file, so check their types here.
        for name, kind in (("template", str), ("use_chat_template", bool), ("k_shot", int), ("seed", int),
                           ("max_length", int)):
            value = getattr(self, name)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"prompt setting {name} must be {kind.__name__}, not {value!r}")
        if "{text}" not in self.template:
            raise ConfigError("the prompt template needs a {text} placeholder for the article")
        if self.k_shot < 0:
            raise ConfigError(f"k_shot must be >= 0, not {self.k_shot}")
        if self.max_length < 1:
            raise ConfigError(f"max_length must be positive, not {self.max_length}")
        if self.label_names is not None:
            self.label_names = {str(k): str(v) for k, v in self.label_names.items()}


def load_prompt_config(path: str | Path) -> PromptConfig:
    """A PromptConfig from a YAML file whose keys are PromptConfig's fields (all optional).

    label_names may be a mapping or a "0=bearish,1=bullish" string."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of prompt settings, got {type(data).__name__}")
    known = {f.name for f in fields(PromptConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown prompt settings {', '.join(map(str, unknown))}; "
                         f"known: {', '.join(sorted(known))}")
    if isinstance(data.get("label_names"), str):
        data["label_names"] = parse_label_names(data["label_names"])
    elif data.get("label_names") is not None and not isinstance(data["label_names"], dict):
        raise ConfigError(f"{path}: label_names must be a mapping or a 'label=name,...' string")
    return PromptConfig(**data)


def parse_label_names(spec: str) -> dict[str, str]:
    """"0=bearish,1=bullish,2=neutral" -> {"0": "bearish", "1": "bullish", "2": "neutral"}."""
    names: dict[str, str] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        label, sep, name = item.partition("=")
        label, name = label.strip(), name.strip()
        if not sep or not label or not name:
            raise ConfigError(f"bad label name {item.strip()!r} in {spec!r}; write label=name pairs, "
                             "e.g. 0=bearish,1=bullish")
        if label in names:
            raise ConfigError(f"label {label!r} is named twice in {spec!r}")
        names[label] = name
    return names


# --------------------------------------------------------------------------
# Prompts
# --------------------------------------------------------------------------

def shown_labels(labels: LabelSet, config: PromptConfig) -> list[str]:
    """What the model sees (and must say) for each label of a sequence task, in label-set order."""
    names = config.label_names or {}
    texts = [names.get(label, label) for label in labels]
    folded = [t.strip().lower() for t in texts]
    if len(set(folded)) != len(folded) or not all(folded):
        raise ConfigError(f"label names must be non-empty and distinct (ignoring case): {texts}")
    return texts


def shown_types(labels: LabelSet, config: PromptConfig) -> dict[str, str]:
    """Entity type -> the name the model sees, for a token-tagging label set."""
    names = config.label_names or {}
    shown = {t: names.get(t, t) for t in entity_types(labels)}
    folded = [n.strip().lower() for n in shown.values()]
    if len(set(folded)) != len(folded) or not all(folded):
        raise ConfigError(f"entity type names must be non-empty and distinct (ignoring case): {list(shown.values())}")
    return shown


def select_shots(train_examples: Sequence[SeqExample | TokenExample], k: int, seed: int) -> list:
    """k labelled training examples, taking one per label in turn (round-robin) so every label is
    shown when k allows; sentences are grouped by their first entity type (or none). Seeded."""
    rng = random.Random(seed)
    pools: dict[str, list] = {}
    for example in train_examples:
        key = _stratum(example)
        if key is not None:
            pools.setdefault(key, []).append(example)
    keys = sorted(pools)
    rng.shuffle(keys)  # which labels come first when k < number of labels
    for key in keys:
        rng.shuffle(pools[key])
    shots: list = []
    while len(shots) < k and any(pools.values()):
        for key in keys:
            if pools[key] and len(shots) < k:
                shots.append(pools[key].pop())
    rng.shuffle(shots)  # the last shot's label should not be predictable from the round-robin order
    return shots


def _stratum(example: SeqExample | TokenExample) -> str | None:
    if isinstance(example, TokenExample):
        if example.tags is None:
            return None
        entities = tags_to_entities(example.tokens, example.tags, None)
        return entities[0].type if entities else ""
    return example.label


def build_answers(examples: Sequence[SeqExample | TokenExample], labels: LabelSet, config: PromptConfig) -> list[str]:
    """The text a perfect model would answer: the label's name, or "type: span; ..." / "none"."""
    if examples and isinstance(examples[0], TokenExample):
        shown = shown_types(labels, config)
        return [format_entities(_gold_entities(e, shown)) for e in examples]
    texts = dict(zip(labels.names, shown_labels(labels, config)))
    answers = []
    for example in examples:
        if example.label is None:
            raise ConfigError(f"{example.source}: an example without a label can't be a shot or a training answer")
        answers.append(texts[labels.names[labels.index(example.label)]])  # index() names unknown labels
    return answers


def _gold_entities(example: TokenExample, shown: dict[str, str]) -> list[tuple[str, str]]:
    if example.tags is None:
        raise ConfigError(f"{example.source}: an untagged sentence can't be a shot or a training answer")
    return [(shown.get(e.type, e.type), e.text) for e in tags_to_entities(example.tokens, example.tags, None)]


def format_entities(entities: Sequence[tuple[str, str]]) -> str:
    """[("PER", "John"), ("LOC", "Paris")] -> "PER: John; LOC: Paris"; no entities -> "none"."""
    return "; ".join(f"{etype}: {span}" for etype, span in entities) or "none"


def build_prompts(examples: Sequence[SeqExample | TokenExample], labels: LabelSet, config: PromptConfig,
                  tokenizer, shots: list | None = None) -> list[str]:
    """One prompt string per example, ready to tokenise (chat-templated when configured).

    Shots (labelled examples) come first: as user/assistant turns under a chat template, otherwise
    as filled templates followed by their answers. Texts are cut (shots to an equal share of the
    budget, the query to what is left) so that the prompt plus the longest label fits config.max_length."""
    token_task = bool(examples) and isinstance(examples[0], TokenExample)
    template = config.template
    if token_task and template == DEFAULT_TEMPLATE:
        template = NER_TEMPLATE
    names = list(shown_types(labels, config).values()) if token_task else shown_labels(labels, config)
    filled = _PLACEHOLDER.sub(lambda m: ", ".join(names) if m.group(1) == "labels" else "{text}", template)
    chat = config.use_chat_template and bool(getattr(tokenizer, "chat_template", None))
    # Room left for the answer when a label is scored as the prompt's continuation.
    reserve = 0 if token_task else max(len(_encode(tokenizer, t)) for t in names) + 1

    shots = list(shots or [])
    shot_answers = build_answers(shots, labels, config) if shots else []
    shot_texts = [_example_text(s) for s in shots]
    budget = config.max_length - reserve - len(_encode(tokenizer, _render(
        tokenizer, filled, [("", a) for a in shot_answers], "", chat)))
    if budget < 1:
        raise ConfigError(f"the prompt template{' and shots' if shots else ''} alone take more than max_length="
                         f"{config.max_length} tokens; raise max_length, shorten the template or use fewer shots")
    share = budget // (len(shots) + 1)
    shot_pairs = [(_truncate_tokens(tokenizer, t, share), a) for t, a in zip(shot_texts, shot_answers)]
    limit = config.max_length - reserve
    return [_fit(tokenizer, filled, shot_pairs, _example_text(e), chat, limit) for e in examples]


def _example_text(example: SeqExample | TokenExample) -> str:
    if isinstance(example, TokenExample):
        return " ".join(example.tokens)
    return example.text if example.text_pair is None else f"{example.text}\n{example.text_pair}"


def _render(tokenizer, filled: str, shot_pairs: list[tuple[str, str]], text: str, chat: bool) -> str:
    # str.replace rather than str.format: user templates may contain other braces (JSON examples).
    if chat:
        messages = []
        for shot_text, answer in shot_pairs:
            messages += [{"role": "user", "content": filled.replace("{text}", shot_text)},
                         {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": filled.replace("{text}", text)})
        # enable_thinking=False: Qwen3-style templates would otherwise expect a <think> block before
        # the answer; templates without the variable ignore it.
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                             enable_thinking=False)
    blocks = [filled.replace("{text}", shot_text) + answer + "\n\n" for shot_text, answer in shot_pairs]
    return "".join(blocks) + filled.replace("{text}", text)


def _fit(tokenizer, filled: str, shot_pairs: list[tuple[str, str]], text: str, chat: bool, limit: int) -> str:
    """Render with `text` cut until the whole prompt has at most `limit` tokens."""
    prompt = _render(tokenizer, filled, shot_pairs, text, chat)
    n_text = len(_encode(tokenizer, text))
    excess = len(_encode(tokenizer, prompt)) - limit
    # Tokens at the text's edges can merge with the template's, so one cut may not be enough.
    while excess > 0 and n_text > 0:
        n_text = max(0, n_text - excess)
        prompt = _render(tokenizer, filled, shot_pairs, _truncate_tokens(tokenizer, text, n_text), chat)
        excess = len(_encode(tokenizer, prompt)) - limit
    return prompt


def _truncate_tokens(tokenizer, text: str, n: int) -> str:
    """The longest prefix of `text` that is its first n tokens (cut at a character offset, so the
    kept text is exactly the original)."""
    if n <= 0:
        return ""
    if getattr(tokenizer, "is_fast", False):
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        return text if len(offsets) <= n else text[: offsets[n - 1][1]]
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= n else tokenizer.decode(ids[:n])


# --------------------------------------------------------------------------
# Tokenisation shared by scoring, generation and instruction features
# --------------------------------------------------------------------------

def _adds_bos(tokenizer) -> bool:
    bos = tokenizer.bos_token_id
    return bos is not None and tokenizer("a")["input_ids"][:1] == [bos]


def _encode(tokenizer, text: str, adds_bos: bool | None = None) -> list[int]:
    """Token ids of `text` with the tokenizer's BOS (if it uses one) but never an EOS, and no
    second BOS when the text (a chat template) already starts with it."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if adds_bos is None:
        adds_bos = _adds_bos(tokenizer)
    if adds_bos and ids[:1] != [tokenizer.bos_token_id]:
        ids = [tokenizer.bos_token_id] + ids
    return ids


def continuation_ids(tokenizer, prompt: str, continuation: str, adds_bos: bool | None = None) -> tuple[list[int], int]:
    """Ids of prompt+continuation tokenised together, and where the continuation's tokens start.

    Tokenising together keeps BPE merges across the boundary ("Output: " + "positive" is
    [..., ":", " positive"], not [..., ":", " ", "positive"]); the continuation's tokens are the
    suffix after the longest prefix shared with the prompt tokenised alone."""
    if adds_bos is None:
        adds_bos = _adds_bos(tokenizer)
    prompt_ids = _encode(tokenizer, prompt, adds_bos)
    full = _encode(tokenizer, prompt + continuation, adds_bos)
    start = 0
    while start < min(len(prompt_ids), len(full)) and prompt_ids[start] == full[start]:
        start += 1
    if start == len(full):
        raise ValueError(f"continuation {continuation!r} adds no tokens to the prompt")
    if start == 0:
        raise ValueError("the prompt is empty: a continuation needs at least one context token")
    return full, start


@contextmanager
def _evaluating(model):
    """Eval mode (no dropout) for the duration, then back to the caller's mode (e.g. mid-training)."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _check_causal(model) -> None:
    if getattr(model.config, "is_causal", True) is False:
        raise ValueError("the model's attention is bidirectional (config.is_causal=False); "
                         "prompting needs a causal language model")


# --------------------------------------------------------------------------
# Label scoring and free generation
# --------------------------------------------------------------------------

@torch.inference_mode()
def label_log_likelihoods(model, tokenizer, prompts: Sequence[str], label_texts: Sequence[str],
                          batch_size: int = 8) -> torch.Tensor:
    """(N, L) log P(label | prompt): the sum of the log-probs of every token of the label.

    Each prompt runs once: its tokens shared by all labels fill a KV cache that the L label
    continuations then reuse, so the cost is ~N prompts rather than N*L prompt+label sequences.
    A batch holds `batch_size` prompts (and their batch_size*L continuations)."""
    _check_causal(model)
    adds_bos = _adds_bos(tokenizer)
    rows = [_PromptLabels.build(tokenizer, p, label_texts, adds_bos) for p in prompts]
    # Longest first, so batches hold similar lengths (little padding) and memory peaks early.
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i].prefix))
    scores = torch.empty(len(rows), len(label_texts), dtype=torch.float64)
    with _evaluating(model):
        for b in range(0, len(order), batch_size):
            ids = order[b:b + batch_size]
            scores[ids] = _score_batch(model, tokenizer, [rows[i] for i in ids], len(label_texts))
    return scores


@dataclass
class _PromptLabels:
    """One prompt split for scoring: the prefix every label shares, then per label the rest of
    prompt+label and how many of those tokens still belong to the prompt (not scored)."""

    prefix: list[int]
    suffixes: list[list[int]]
    skips: list[int]

    @staticmethod
    def build(tokenizer, prompt: str, label_texts: Sequence[str], adds_bos: bool) -> _PromptLabels:
        pairs = [continuation_ids(tokenizer, prompt, t, adds_bos) for t in label_texts]
        # Label boundaries can differ (BPE merges), but ids before each start equal the prompt's.
        shared = min(start for _, start in pairs)
        return _PromptLabels(pairs[0][0][:shared], [ids[shared:] for ids, _ in pairs],
                             [start - shared for _, start in pairs])


def _score_batch(model, tokenizer, rows: list[_PromptLabels], n_labels: int) -> torch.Tensor:
    """(B, L) label log-likelihoods for B prompts."""
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    # Prefixes are left-padded so that all of them end at the same column, where the suffixes begin.
    prefix_ids, prefix_mask = _pad([r.prefix for r in rows], pad_id, left=True)  # (B, P)
    positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)  # real tokens count from 0 whatever the padding
    out = model(input_ids=prefix_ids.to(device), attention_mask=prefix_mask.to(device),
                position_ids=positions.to(device), use_cache=True, logits_to_keep=1)
    first_log_probs = torch.log_softmax(out.logits[:, -1].float(), dim=-1)  # (B, V): predicts suffix token 0
    cache_name = _cache_argument(model)
    cache = getattr(out, cache_name)
    cache.batch_repeat_interleave(n_labels)  # (B, ...) -> (B*L, ...), row b*L + l

    suffixes = [s for r in rows for s in r.suffixes]
    suffix_ids, suffix_mask = _pad(suffixes, pad_id, left=False)  # (B*L, S)
    mask = torch.cat([prefix_mask.repeat_interleave(n_labels, dim=0), suffix_mask], dim=1)  # (B*L, P+S)
    lengths = prefix_mask.sum(-1).repeat_interleave(n_labels)  # (B*L,)
    suffix_positions = lengths[:, None] + torch.arange(suffix_ids.shape[1])  # (B*L, S)
    logits = model(input_ids=suffix_ids.to(device), attention_mask=mask.to(device),
                   position_ids=suffix_positions.to(device), use_cache=True, **{cache_name: cache}).logits
    log_probs = torch.log_softmax(logits.float(), dim=-1)  # (B*L, S, V): position j predicts suffix token j+1

    scores = []
    skips = [k for r in rows for k in r.skips]
    for row, (suffix, skip) in enumerate(zip(suffixes, skips)):
        targets = torch.tensor(suffix, device=device)  # (S_row,)
        predicted = torch.cat([first_log_probs[row // n_labels, None], log_probs[row, :len(suffix) - 1]])  # (S_row, V)
        scores.append(predicted[skip:].gather(1, targets[skip:, None]).sum())
    return torch.stack(scores).double().cpu().view(len(rows), n_labels)  # (B*L,) -> (B, L)


def _cache_argument(model) -> str:
    """transformers renamed `past_key_values` to `cache` (argument and output field) during 5.x."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # PEFT wraps the model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _pad(sequences: list[list[int]], pad_id: int, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention_mask), both (len(sequences), longest)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        cols = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, cols] = torch.tensor(seq, dtype=torch.long)
        mask[row, cols] = 1
    return ids, mask


@torch.inference_mode()
def score_labels(model, tokenizer, prompts: Sequence[str], label_texts: Sequence[str],
                 batch_size: int = 8) -> torch.Tensor:
    """(N, L) probabilities over the labels: softmax of each label's full-sequence log-likelihood."""
    return torch.softmax(label_log_likelihoods(model, tokenizer, prompts, label_texts, batch_size), dim=-1)


@torch.inference_mode()
def generate_texts(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 16,
                   batch_size: int = 8) -> list[str]:
    """Greedy continuations of each prompt, special tokens removed."""
    _check_causal(model)
    adds_bos = _adds_bos(tokenizer)
    encoded = [_encode(tokenizer, p, adds_bos) for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    outputs: list[str] = [""] * len(encoded)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with _evaluating(model):
        for b in range(0, len(order), batch_size):
            # Left padding: generation appends after the last column, so every row must end there.
            input_ids, mask = _pad([encoded[i] for i in order[b:b + batch_size]], pad_id, left=True)
            width = input_ids.shape[1]
            generated = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                       max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                       temperature=None, top_p=None, top_k=None,
                                       pad_token_id=pad_id, eos_token_id=tokenizer.eos_token_id)
            new_tokens = generated[:, width:]  # (B, <= max_new_tokens)
            for row, ids in enumerate(new_tokens.tolist()):
                outputs[order[b + row]] = tokenizer.decode(ids, skip_special_tokens=True)
    return outputs


def match_label(output: str, label_texts: Sequence[str]) -> str | None:
    """The label whose text equals the output's first line (case-insensitive; surrounding spaces,
    quotes and a final period ignored), else None."""
    lines = output.strip().splitlines()
    answer = lines[0].strip().strip("\"'`*").rstrip(".").strip().lower() if lines else ""
    for text in label_texts:
        if answer == text.strip().lower():
            return text
    return None


def generate_labels(model, tokenizer, prompts: Sequence[str], label_texts: Sequence[str], max_new_tokens: int = 16,
                    batch_size: int = 8) -> tuple[list[str | None], list[str]]:
    """Greedy generation matched against the labels: (matched label text or None, raw outputs)."""
    raw = generate_texts(model, tokenizer, prompts, max_new_tokens, batch_size)
    return [match_label(r, label_texts) for r in raw], raw


# --------------------------------------------------------------------------
# NER output parsing
# --------------------------------------------------------------------------

_ITEM_SPLIT = re.compile(r"[;\n]|,(?=\s*[^\s,:;][^,:;]{0,40}:)")  # a comma only when a "type:" follows
_BULLET = re.compile(r"^(?:[-*•]|\d+[.)])\s+")
_NONE = re.compile(r"(?i)^[\s\"'`*\[(]*(?:none|no entities)[\s.!\"'`*\])]*$")
_PREAMBLE = re.compile(r"(?i)^\s*(?:###\s*)?(?:output|answer|entities)\s*:\s*")
_DOTTED_END = re.compile(r"(?:^|\s)(?:[A-Za-z]\.)+$")  # "U.S." keeps its final period


def parse_entities(text: str, entity_types: Sequence[str]) -> list[tuple[str, str]] | None:
    """"PER: John Smith; LOC: Paris" -> [("PER", "John Smith"), ("LOC", "Paris")].

    Types match case-insensitively and come back as spelled in `entity_types`. Items may be split
    by ";", newlines or ", TYPE:"; bullets, quotes and trailing punctuation are dropped; items with
    an unknown type or no colon are skipped. "none" -> []. None when nothing usable was found."""
    text = text.split("###")[0].strip()  # a base model may go on to write the next template block
    text = text.split("\n\n")[0]
    text = _PREAMBLE.sub("", text, count=1)
    if _NONE.match(text):
        return []
    canonical = {t.strip().lower(): t for t in entity_types}
    entities: list[tuple[str, str]] = []
    for item in _ITEM_SPLIT.split(text):
        item = _BULLET.sub("", item.strip())
        etype, colon, span = item.partition(":")
        etype = canonical.get(etype.strip().strip("\"'`*[]()").strip().lower())
        span = _clean_span(span)
        if colon and etype is not None and span:
            entities.append((etype, span))
    return entities or None


def _clean_span(span: str) -> str:
    span = span.strip().strip("\"'`*").strip()
    span = span.rstrip(",;:!?").rstrip()
    if span.endswith(".") and not _DOTTED_END.search(span):
        span = span[:-1].rstrip()
    return span.strip("\"'`*").strip()


def entities_to_tags(words: Sequence[str], entities: Sequence[tuple[str, str]]) -> list[str]:
    """IOB2 tags for `words`: each entity's span is found as a run of words not yet tagged (first
    such run, left to right; exact case first, then ignoring case). Spans not found are ignored."""
    tags = ["O"] * len(words)
    used = [False] * len(words)
    for etype, span in entities:
        start, length = _find_span(words, _span_word_variants(span), used)
        if start is None:
            continue
        for i in range(start, start + length):
            tags[i] = ("B-" if i == start else "I-") + etype
            used[i] = True
    return tags


def _span_word_variants(span: str) -> list[list[str]]:
    """The span as words: CoNLL-style split (a final punctuation word dropped first: it is rarely part
    of the entity), then whitespace split."""
    variants = [split_words(span), span.split()]
    trimmed = [v[:-1] for v in variants if len(v) > 1 and not any(c.isalnum() for c in v[-1])]
    variants = trimmed + variants
    unique: list[list[str]] = []
    for v in variants:
        if v and v not in unique:
            unique.append(v)
    return unique


def _find_span(words: Sequence[str], variants: list[list[str]], used: list[bool]) -> tuple[int | None, int]:
    for fold in (False, True):
        norm = (lambda w: w.casefold()) if fold else (lambda w: w)
        folded_words = [norm(w) for w in words]
        for variant in variants:
            target = [norm(w) for w in variant]
            n = len(target)
            for start in range(len(words) - n + 1):
                if folded_words[start:start + n] == target and not any(used[start:start + n]):
                    return start, n
    return None, 0


# --------------------------------------------------------------------------
# Instruction tuning
# --------------------------------------------------------------------------

def instruct_features(tokenizer, prompt: str, answer: str, max_length: int) -> dict:
    """input_ids / attention_mask / labels for causal-LM training on prompt + answer + EOS, with the
    loss only on the answer and EOS (labels = -100 on the prompt). Too long: the prompt is cut from
    the left (after any BOS), so the answer, which carries the loss, is kept."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token to end the answer with")
    ids, start = continuation_ids(tokenizer, prompt, answer)
    ids = ids + [tokenizer.eos_token_id]
    excess = len(ids) - max_length
    if excess > 0:
        keep_head = 1 if _adds_bos(tokenizer) else 0
        if start - keep_head - excess < 1:
            raise ValueError(f"the answer ({len(ids) - start} tokens with EOS) leaves no room for the prompt "
                             f"in max_length={max_length}")
        ids = ids[:keep_head] + ids[keep_head + excess:]
        start -= excess
    labels = [IGNORE_INDEX] * start + ids[start:]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def collate_instruct(features: Sequence[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-pad instruct_features into tensors (labels padded with -100)."""
    width = max(len(f["input_ids"]) for f in features)
    batch = {"input_ids": torch.full((len(features), width), pad_token_id, dtype=torch.long),
             "attention_mask": torch.zeros((len(features), width), dtype=torch.long),
             "labels": torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)}
    for row, f in enumerate(features):
        n = len(f["input_ids"])
        for key in batch:
            batch[key][row, :n] = torch.tensor(f[key])
    return batch


# --------------------------------------------------------------------------
# End to end
# --------------------------------------------------------------------------

def few_shot_examples(config: PromptConfig, train_examples: Sequence | None) -> list:
    """The config.k_shot examples a few-shot prompt shows (none for zero-shot)."""
    if config.k_shot <= 0:
        return []
    if not train_examples:
        raise ValueError(f"{config.k_shot}-shot prompting needs training examples to draw shots from")
    return select_shots(train_examples, config.k_shot, config.seed)


def predict_zero_shot(model, tokenizer, examples: Sequence[SeqExample | TokenExample], labels: LabelSet,
                      config: PromptConfig, train_examples: Sequence[SeqExample | TokenExample] | None = None,
                      mode: Literal["score", "generate"] = "score", batch_size: int = 8,
                      max_new_tokens: int | None = None, shots: Sequence | None = None) -> dict:
    """Zero-/few-shot predictions (few-shot when config.k_shot > 0, shots drawn from train_examples, or
    the given `shots` as they are, e.g. those a saved run showed).

    Sequence tasks: {"predictions": label names, "probabilities": (N, L) lists in label-set order
    (score mode), "raw": outputs (generate mode), "invalid": outputs matching no label (predicted
    as INVALID)}. Token tasks always generate: "predictions" are tag lists (IOB2, or plain types
    for a label set without B-/I- tags); "invalid" counts unparsable outputs (read as no entities).
    max_new_tokens defaults to 16 for labels and 128 for entity lists."""
    if mode not in ("score", "generate"):
        raise ValueError(f"mode must be 'score' or 'generate', not {mode!r}")
    if shots is None:
        shots = few_shot_examples(config, train_examples)
    prompts = build_prompts(examples, labels, config, tokenizer, list(shots))
    if examples and isinstance(examples[0], TokenExample):
        return _predict_tags(model, tokenizer, examples, labels, config, prompts, batch_size, max_new_tokens or 128)

    texts = shown_labels(labels, config)
    if mode == "score":
        probs = score_labels(model, tokenizer, prompts, texts, batch_size)
        return {"predictions": [labels.names[i] for i in probs.argmax(dim=-1).tolist()],
                "probabilities": probs.tolist(), "invalid": 0}
    matched, raw = generate_labels(model, tokenizer, prompts, texts, max_new_tokens or 16, batch_size)
    name_of = dict(zip(texts, labels.names))
    predictions = [INVALID if m is None else name_of[m] for m in matched]
    return {"predictions": predictions, "raw": raw, "invalid": sum(m is None for m in matched)}


def _predict_tags(model, tokenizer, examples: Sequence[TokenExample], labels: LabelSet, config: PromptConfig,
                  prompts: list[str], batch_size: int, max_new_tokens: int) -> dict:
    type_of = {shown: etype for etype, shown in shown_types(labels, config).items()}
    raw = generate_texts(model, tokenizer, prompts, max_new_tokens, batch_size)
    bio = any(name.startswith(("B-", "I-")) for name in labels)
    predictions, invalid = [], 0
    for example, output in zip(examples, raw):
        entities = parse_entities(output, list(type_of))
        if entities is None:
            invalid += 1
            entities = []
        tags = entities_to_tags(example.tokens, [(type_of[shown], span) for shown, span in entities])
        predictions.append(tags if bio else [t if t == "O" else t[2:] for t in tags])
    return {"predictions": predictions, "raw": raw, "invalid": invalid}
