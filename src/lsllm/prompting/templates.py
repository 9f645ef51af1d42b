"""Prompts: label names as the model sees them, few-shot selection, answers, and prompts cut to fit."""
from __future__ import annotations

import random
import re
from collections.abc import Sequence

from lsllm.data.labels import LabelSet, entity_types
from lsllm.data.records import SeqExample, TokenExample
from lsllm.errors import ConfigError
from lsllm.prompting.config import DEFAULT_TEMPLATE, NER_TEMPLATE, PromptConfig
from lsllm.prompting.tokens import encode_prompt
from lsllm.spans import tags_to_entities

_PLACEHOLDER = re.compile(r"\{(labels|text)\}")


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
    reserve = 0 if token_task else max(len(encode_prompt(tokenizer, t)) for t in names) + 1

    shots = list(shots or [])
    shot_answers = build_answers(shots, labels, config) if shots else []
    shot_texts = [_example_text(s) for s in shots]
    budget = config.max_length - reserve - len(encode_prompt(tokenizer, _render(
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
    n_text = len(encode_prompt(tokenizer, text))
    excess = len(encode_prompt(tokenizer, prompt)) - limit
    # Tokens at the text's edges can merge with the template's, so one cut may not be enough.
    while excess > 0 and n_text > 0:
        n_text = max(0, n_text - excess)
        prompt = _render(tokenizer, filled, shot_pairs, _truncate_tokens(tokenizer, text, n_text), chat)
        excess = len(encode_prompt(tokenizer, prompt)) - limit
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
