"""Request bodies -> examples, checked before anything is queued: a bad request gets its 4xx and never
reaches the model, so it can't affect other clients' answers."""
from __future__ import annotations

import json
from dataclasses import dataclass

from lsllm.data.records import SeqExample, TokenExample
from lsllm.spans import split_words

AGGREGATIONS = ("none", "simple", "first", "max", "average")


class ServeError(Exception):
    """A request the server refuses: answered as `{"error", "error_type"}` with `status`."""

    def __init__(self, status: int, message: str, error_type: str):
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type


def bad_request(message: str) -> ServeError:
    return ServeError(400, message, "validation")


def invalid(message: str) -> ServeError:
    return ServeError(422, message, "validation")


def parse_body(body: bytes, max_bytes: int) -> dict:
    if len(body) > max_bytes:
        raise ServeError(413, f"request body is {len(body)} bytes; the limit is {max_bytes}", "payload_too_large")
    if not body.strip():
        raise ServeError(400, "empty request body; send a JSON object", "empty")
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ServeError(400, f"malformed JSON: {err}", "malformed") from None
    if not isinstance(payload, dict):
        raise invalid(f"expected a JSON object, got {type(payload).__name__}")
    return payload


def _flag(payload: dict, key: str, default: bool) -> bool:
    value = payload.get(key, default)
    if not isinstance(value, bool):
        raise invalid(f"'{key}' must be true or false, not {json.dumps(value)[:40]}")
    return value


def _text(value, where: str) -> str:
    if not isinstance(value, str):
        raise invalid(f"{where} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise ServeError(400, f"{where} is empty; send the text to classify", "empty")
    if "\x00" in value:
        raise invalid(f"{where} contains a NUL character")
    return value


def _batch(value, key: str, max_items: int) -> tuple[list, bool]:
    """(items, single): a lone value or a non-empty list of at most max_items."""
    if isinstance(value, list):
        if not value:
            raise ServeError(400, f"'{key}' is an empty list; send at least one input", "empty")
        if len(value) > max_items:
            raise ServeError(413, f"'{key}' has {len(value)} inputs; the limit per request is {max_items} "
                                  "(--max-client-batch-size)", "payload_too_large")
        return value, False
    return [value], True


def _required(payload: dict, key: str):
    if key not in payload:
        raise invalid(f"missing '{key}'")
    return payload[key]


@dataclass
class Parsed:
    examples: list
    single: bool
    texts: list[str] | None = None
    """The raw strings of token inputs (entity offsets point into them); None for pre-split words."""


def predict_request(payload: dict, max_items: int) -> tuple[Parsed, bool, bool]:
    """TEI's /predict: `{"inputs": str | [str] | [[a, b]], "truncate", "raw_scores"}`."""
    items, single = _batch(_required(payload, "inputs"), "inputs", max_items)
    examples = []
    for i, item in enumerate(items):
        where = "'inputs'" if single else f"'inputs'[{i}]"
        if isinstance(item, list):
            if len(item) != 2:
                raise invalid(f"{where} must be a text or a pair [text, text_pair], not a list of {len(item)}")
            examples.append(SeqExample(text=_text(item[0], f"{where}[0]"), text_pair=_text(item[1], f"{where}[1]")))
        else:
            examples.append(SeqExample(text=_text(item, where)))
    return Parsed(examples, single), _flag(payload, "truncate", False), _flag(payload, "raw_scores", False)


def classify_request(payload: dict, max_items: int) -> Parsed:
    """vLLM's /classify: `{"model", "input": str | [str]}` (`model` is checked by the route)."""
    items, single = _batch(_required(payload, "input"), "input", max_items)
    return Parsed([SeqExample(text=_text(t, "'input'" if single else f"'input'[{i}]")) for i, t in enumerate(items)],
                  single)


def tag_request(payload: dict, max_items: int) -> tuple[Parsed, str]:
    """`{"inputs": str | [str], "aggregation_strategy"}` or pre-split `{"tokens": [[word, ...], ...]}`."""
    if ("inputs" in payload) == ("tokens" in payload):
        raise invalid("send exactly one of 'inputs' (texts) or 'tokens' (lists of words)")
    aggregation = payload.get("aggregation_strategy", "simple")
    if aggregation not in AGGREGATIONS:
        raise invalid(f"'aggregation_strategy' must be one of {', '.join(AGGREGATIONS)}, not "
                      f"{json.dumps(aggregation)[:40]}")
    if "tokens" in payload:
        value = payload["tokens"]
        if not isinstance(value, list) or not value or not all(isinstance(s, list) for s in value):
            raise invalid("'tokens' must be a non-empty list of sentences, each a list of words")
        sentences, _ = _batch(value, "tokens", max_items)
        examples = []
        for i, words in enumerate(sentences):
            if not words:
                raise ServeError(400, f"'tokens'[{i}] is empty; send at least one word", "empty")
            for j, word in enumerate(words):
                if not isinstance(word, str) or not word.strip() or any(c.isspace() for c in word):
                    raise invalid(f"'tokens'[{i}][{j}] must be one word: a non-empty string without spaces")
            examples.append(TokenExample(tokens=list(words)))
        return Parsed(examples, False), aggregation
    items, single = _batch(payload["inputs"], "inputs", max_items)
    texts = [_text(t, "'inputs'" if single else f"'inputs'[{i}]") for i, t in enumerate(items)]
    return Parsed([TokenExample(tokens=split_words(t)) for t in texts], single, texts), aggregation
