"""The model a server hosts: any run folder `lsllm predict` takes (LS, LS-un, encoder baseline, prompting and
instruct runs, merged exports), with what the routes need from it: its task and labels, token counts for
the batch budget and the input limit, and batch evaluation (the same code offline prediction runs)."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

from lsllm import __version__
from lsllm.data.encode import special_tokens
from lsllm.data.records import SeqExample, TokenExample
from lsllm.inference.batched import Evaluation
from lsllm.model.spec import ModelSpec
from lsllm.predict import Predictor


@dataclass
class ServedModel:
    predictor: object
    """lsllm.predict.Predictor or lsllm.prompting.predictor.PromptPredictor."""
    name: str
    info: dict
    """What GET /info answers (without the server's limits)."""
    max_length: int
    """The most tokens the model reads of a sequence input (longer ones are truncated); token tasks read
    any length in overlapping windows of this size."""
    counting_tokenizer: object = field(init=False, repr=False)
    """The request handlers' own copy of the tokenizer. A fast tokenizer keeps its truncation setting in its
    Rust object, and every call sets it: counting on the event loop with the batcher thread's tokenizer, which
    encodes with truncation, sometimes counted an 800 KB text as max_length tokens and let it through."""

    def __post_init__(self):
        self.counting_tokenizer = copy.deepcopy(self.predictor.tokenizer)

    @property
    def task(self) -> str:
        return self.info["task"]

    @property
    def labels(self) -> list[str]:
        return self.info["labels"]

    @property
    def has_logits(self) -> bool:
        return isinstance(self.predictor, Predictor) and self.task == "seq"

    def evaluate(self, examples: list) -> Evaluation:
        return self.predictor.evaluate(examples)

    def calibrate(self, repeats: int = 2) -> float:
        """What one more forward pass costs in padded tokens on this machine: a 1-row and an 8-row pass of
        the same short text, timed (best of `repeats`), fitted as time = a x padded tokens + b; returns b / a.
        The batcher weighs padding against extra passes with it (a CPU: tens of tokens; a GPU: thousands)."""
        words = ["word"] * 14
        example = TokenExample(tokens=words) if self.task == "token" else SeqExample(text=" ".join(words))
        tokens = self.count_tokens([example])[0]
        self.evaluate([example])  # warm-up

        def best(rows: int) -> float:
            times = []
            for _ in range(repeats):
                started = time.perf_counter()
                self.evaluate([example] * rows)
                times.append(time.perf_counter() - started)
            return min(times)

        one, eight = best(1), best(8)
        per_token = max((eight - one) / (7 * tokens), 1e-12)
        return float(min(max(one / per_token - tokens, 4.0), 16384.0))

    def count_tokens(self, examples: list) -> list[int]:
        """Tokens of each example as the model encodes it, before truncation (batch budget, input limit)."""
        tok = self.counting_tokenizer
        if not examples:
            return []
        if isinstance(examples[0], TokenExample):
            prefix, suffix = special_tokens(tok)
            ids = tok([" ".join(e.tokens) for e in examples], add_special_tokens=False)["input_ids"]
            return [len(prefix) + len(i) + len(suffix) for i in ids]
        texts = [e.text for e in examples]
        pairs = [e.text_pair for e in examples]
        if any(p is not None for p in pairs):
            if tok.sep_token is not None:
                return [len(i) for i in tok(texts, [p or "" for p in pairs])["input_ids"]]
            texts = [t if p is None else f"{t}\n{p}" for t, p in zip(texts, pairs)]
        return [len(i) for i in tok(texts)["input_ids"]]


def load_served_model(run: str | Path, device: str | None = None, precision: str = "auto",
                      batch_size: int = 32) -> ServedModel:
    """Load a run the way `lsllm predict` does (slow: minutes for a large base on a CPU)."""
    from lsllm.prompting.predictor import PromptPredictor, is_prompt_run, read_prompt_info

    run = Path(run)
    name = run.resolve().name
    if is_prompt_run(run):
        prompt = read_prompt_info(run)
        predictor = PromptPredictor(run, batch_size=batch_size, precision=precision, device=device)
        info = {"task": prompt["task"], "labels": prompt["labels"], "base_model": prompt["model"],
                "method": prompt["method"], "mode": prompt["mode"]}
        max_length = predictor.prompt.max_length
    else:
        predictor = Predictor(run, device=device, batch_size=batch_size, precision=precision)
        spec: ModelSpec = predictor.spec
        info = {"task": spec.task, "labels": spec.labels, "base_model": spec.base_model,
                "method": "encoder" if spec.encoder else "ls",
                "attention": "bidirectional" if spec.bidirectional else "causal",
                "pooling": spec.pooling if spec.task == "seq" else None, "max_length": spec.max_length,
                "lora": spec.lora or None, "merged": spec.merged, "format": spec.format}
        max_length = spec.max_length
    info.update(model=name, version=__version__)
    return ServedModel(predictor=predictor, name=name, info=info, max_length=max_length)


def check_servable(run: str | Path) -> str:
    """The run's task, checked without loading weights, so a wrong path fails before the server starts."""
    from lsllm.predict import run_info

    path = Path(run)
    if not path.exists():
        from lsllm.errors import ModelSourceError

        raise ModelSourceError(f"{run}: no such run folder; pass a run folder from `lsllm train` or an export")
    task, _, _ = run_info(path)
    return task

