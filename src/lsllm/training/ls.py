"""The label-supervised method (LS / LS-un): a decoder (or encoder) with a pooled linear head, trained with
cross-entropy. What the training loop needs from it: the model, its training batches, validation, saving the
best model, and that model loaded back the way `lsllm predict` loads it."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import torch

from lsllm.data.encode import collate, encode
from lsllm.data.labels import LabelSet
from lsllm.inference.batched import Evaluation, predict_examples
from lsllm.inference.loading import load_for_inference
from lsllm.inference.precision import autocast_dtype
from lsllm.model.build import build_model, compile_blocks, save_model


class LSMethod:
    trains = True

    def __init__(self, config, splits, device: torch.device):
        m, t, d = config.model, config.train, config.data
        self.config, self.splits = config, splits
        self.model, self.tokenizer = build_model(m, splits.labels.names, max_length=d.max_length,
                                                 label_all_subtokens=d.label_all_subtokens, seed=t.seed,
                                                 frozen_dtype=autocast_dtype(t.precision, device))
        if t.compile:
            compile_blocks(self.model)
        if t.class_weights and m.task == "seq":
            self.model.class_weights = class_weights(splits.train, splits.labels)
        # Tokenize once; every epoch (and every validation) reuses these features.
        self.features = encode(splits.train, m.task, self.tokenizer, splits.labels, d.max_length,
                               d.label_all_subtokens)
        self.val_features = None if splits.validation is None else encode(
            splits.validation, m.task, self.tokenizer, splits.labels, d.max_length, d.label_all_subtokens)
        self.lengths = [len(f.input_ids) for f in self.features]

    def compile(self) -> None:
        """Compile the transformer blocks in place (the loop's automatic decision; --compile does it here)."""
        compile_blocks(self.model)

    def batch(self, ids: list[int]) -> dict[str, torch.Tensor]:
        return collate([self.features[i] for i in ids], self.tokenizer.pad_token_id)

    def validate(self) -> Evaluation:
        t = self.config.train
        return predict_examples(self.model, self.tokenizer, self.splits.validation, self.splits.labels,
                                batch_size=t.eval_batch_size, precision=t.precision, features=self.val_features)

    def record(self, work: Path) -> None:
        """Nothing to write before training: the model folder holds the whole description."""

    def save(self, folder: Path) -> None:
        save_model(self.model, self.tokenizer, folder)

    def load_best(self, work: Path, device: torch.device):
        """The saved best model, loaded the way `lsllm predict` loads it, as a function of examples."""
        t = self.config.train
        model, tokenizer = load_for_inference(work / "model", t.precision, str(device))
        return lambda examples: predict_examples(model, tokenizer, examples, self.splits.labels,
                                                 t.eval_batch_size, t.precision)

    def summary(self, device: torch.device) -> dict:
        return {"device": str(device)}


def class_weights(examples, labels: LabelSet) -> torch.Tensor:
    """Inverse class frequency, normalised so a balanced set gets weight 1 everywhere."""
    counts = Counter(e.label for e in examples)
    freq = torch.tensor([counts.get(name, 0) for name in labels.names], dtype=torch.float32).clamp(min=1)
    return freq.sum() / (len(freq) * freq)
