"""`lsllm train --method instruct`: the paper's instruction-tuning baseline. LoRA on the causal LM, trained on
prompt -> label text with the loss on the answer only, by the same loop as LS (resume, validation-based
step selection, early stopping, DDP, log.jsonl); validation and test are then prompted like zero-shot."""
from __future__ import annotations

from pathlib import Path

import torch

from lsllm.errors import ConfigError
from lsllm.files import atomic_folder
from lsllm.inference.batched import Evaluation
from lsllm.inference.loading import load_causal_lm
from lsllm.inference.precision import model_autocast
from lsllm.model.build import load_tokenizer
from lsllm.model.lora import apply_lora, resolve_lora
from lsllm.model.sources import resolve_source
from lsllm.prompting.instruct_data import collate_instruct, instruct_features
from lsllm.prompting.predict import predict_zero_shot
from lsllm.prompting.predictor import ADAPTER
from lsllm.prompting.run import PromptMethod
from lsllm.prompting.templates import build_answers, build_prompts

ANSWER_ROOM = 64
"""Tokens allowed for the answer (label name or entity list) beyond the prompt's max_length."""


class InstructMethod(PromptMethod):
    """Prompting (prompt.json, prediction, summary) plus LoRA training of the causal LM."""

    trains = True

    def __init__(self, config, splits, device: torch.device):
        super().__init__(config, splits, device)
        m, t = config.model, config.train
        if m.lora == "none":
            raise ConfigError("--method instruct trains a LoRA adapter on the causal LM; choose --lora paper or "
                              "all-linear")
        path = resolve_source(m.model)
        self.tokenizer = load_tokenizer(path)
        model = load_causal_lm(path, "cpu")  # the accelerator moves it to the run's device
        torch.manual_seed(t.seed)  # LoRA initialisation is part of the seeded run
        decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
        self.lora = resolve_lora(decoder, m.lora, m.lora_rank, m.lora_alpha, m.lora_dropout, m.lora_targets)
        self.model = apply_lora(model, self.lora)
        prompts = build_prompts(splits.train, splits.labels, self.prompt, self.tokenizer)
        answers = build_answers(splits.train, splits.labels, self.prompt)
        self.features = [instruct_features(self.tokenizer, p, a, self.prompt.max_length + ANSWER_ROOM)
                         for p, a in zip(prompts, answers)]
        self.lengths = [len(f["input_ids"]) for f in self.features]

    def batch(self, ids: list[int]) -> dict[str, torch.Tensor]:
        return collate_instruct([self.features[i] for i in ids], self.tokenizer.pad_token_id)

    def validate(self) -> Evaluation:
        t = self.config.train
        with model_autocast(self.model, t.precision):
            return predict_zero_shot(self.model, self.tokenizer, self.splits.validation, self.splits.labels,
                                     self.prompt, mode=self.config.prompt.mode, batch_size=t.eval_batch_size,
                                     shots=[])

    def save(self, folder: Path) -> None:
        """The adapter where prompt.json says it is (`model/adapter`), replaced atomically."""
        assert Path(folder).name == Path(ADAPTER).parent.name
        with atomic_folder(Path(folder), replace=True) as tmp:
            self.model.save_pretrained(tmp / Path(ADAPTER).name)

    def summary(self, device: torch.device) -> dict:
        return {**super().summary(device), "lora": self.lora}
