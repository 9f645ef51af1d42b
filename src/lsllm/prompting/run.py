"""`lsllm train --method zero-shot | few-shot`: the paper's prompting baselines as a method of the one training
loop that trains nothing. The run folder gets prompt.json (what `lsllm predict` needs) and, from the same
run writer as every method, metrics, reports, curves, confusion matrix and predictions."""
from __future__ import annotations

from pathlib import Path

import torch

from lsllm.prompting.config import PromptConfig, load_prompt_config, parse_label_names
from lsllm.prompting.predict import few_shot_examples
from lsllm.prompting.predictor import PromptPredictor, save_prompt_run


def resolve_prompt(config) -> PromptConfig:
    """The prompt settings of a run: its prompt file (or the defaults), then the run's flags."""
    p = config.prompt
    prompt = load_prompt_config(p.file) if p.file else PromptConfig()
    prompt.k_shot = p.k_shot if config.method == "few-shot" else 0
    prompt.seed = config.train.seed
    if p.label_names:
        prompt.label_names = parse_label_names(p.label_names)
    return prompt


class PromptMethod:
    """Zero-/few-shot prompting of the causal LM as it is."""

    trains = False

    def __init__(self, config, splits, device: torch.device):
        self.config, self.splits = config, splits
        self.prompt = resolve_prompt(config)
        self.shots = few_shot_examples(self.prompt, splits.train)

    def record(self, work: Path) -> None:
        """prompt.json: base model, labels, prompt settings and shots, so the folder predicts on its own."""
        c = self.config
        save_prompt_run(work, c.method, c.model.model, c.model.task, self.splits.labels.names, self.prompt,
                        c.prompt.mode, self.shots)

    def load_best(self, work: Path, device: torch.device):
        """The run folder loaded the way `lsllm predict` loads it, as a function of examples."""
        t = self.config.train
        return PromptPredictor(work, batch_size=t.eval_batch_size, precision=t.precision, device=str(device)).evaluate

    def summary(self, device: torch.device) -> dict:
        return {"device": str(device), "k_shot": self.prompt.k_shot, "mode": self.config.prompt.mode}
