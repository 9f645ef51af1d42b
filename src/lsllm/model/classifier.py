"""LS-LLM: a backbone's final hidden states -> pooling (sequence tasks) -> linear head `score`."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lsllm.data.encode import IGNORE_INDEX
from lsllm.model.attention import position_ids_from_mask
from lsllm.model.pooling import POOLERS
from lsllm.model.spec import ModelSpec


@dataclass
class ClassifierOutput:
    logits: torch.Tensor
    """(B, num_labels) for sequence tasks, (B, T, num_labels) for token tasks."""
    loss: torch.Tensor | None = None


class LSModel(nn.Module):
    """Label-supervised classifier or tagger over any `AutoModel` backbone (optionally LoRA-wrapped)."""

    def __init__(self, backbone: nn.Module, spec: ModelSpec, hidden_size: int):
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self.dropout = nn.Dropout(spec.dropout)
        # Named and shaped like transformers' own heads (decoders' sequence heads have no bias), so a
        # merged export loads as *ForSequenceClassification / *ForTokenClassification.
        self.score = nn.Linear(hidden_size, spec.num_labels, bias=spec.task == "token" or spec.encoder)
        self.class_weights: torch.Tensor | None = None

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                labels: torch.Tensor | None = None) -> ClassifierOutput:
        # Positions count real tokens only, so left padding gives the same result as right padding.
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids_from_mask(attention_mask)).last_hidden_state  # (B, T, D)
        hidden = self.dropout(hidden)
        if self.spec.task == "token":
            logits = self.score(hidden)  # (B, T, C)
        elif self.spec.pool_over == "logits":
            logits = POOLERS[self.spec.pooling](self.score(hidden), attention_mask)  # (B, T, C) -> (B, C)
        else:
            logits = self.score(POOLERS[self.spec.pooling](hidden, attention_mask))  # (B, D) -> (B, C)
        loss = None if labels is None else self.loss(logits, labels)
        return ClassifierOutput(logits=logits, loss=loss)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Token labels use IGNORE_INDEX on sub-tokens, specials and padding; cross_entropy skips them.
        weight = None if self.class_weights is None else self.class_weights.to(logits.device, torch.float32)
        return nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                           weight=weight, ignore_index=IGNORE_INDEX)
