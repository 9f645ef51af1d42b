"""Run by test_distributed.py under torch.distributed.run (or alone): train, then record this rank's weights.

Arguments: MODEL TRAIN DEV OUTPUT HASHES [BATCH GRAD_ACCUM [MODE]]; MODE "interrupt" stops every rank at the
second validation (step 6, after the checkpoint of step 3), "resume" resumes. Dropout is off so that a run
split over ranks and a single-process run with the same global batch take the same steps."""
import hashlib
import os
import sys
from pathlib import Path

from lsllm.config import RunConfig
from lsllm.training.checkpoint import trainable_state_dict
from lsllm.training import loop
from lsllm.training.loop import train

model_dir, train_file, dev_file, output, hashes = sys.argv[1:6]
batch, grad_accum = (int(sys.argv[6]), int(sys.argv[7])) if len(sys.argv) > 7 else (4, 1)
mode = sys.argv[8] if len(sys.argv) > 8 else "fresh"
if mode == "interrupt":
    validate = loop._validate

    def _validate(method, config, work, state, *args):
        if state["step"] == 6:
            raise SystemExit("interrupted at step 6")
        return validate(method, config, work, state, *args)

    loop._validate = _validate
config = RunConfig()
config.data.train, config.data.validation = train_file, dev_file
config.model.model = model_dir
config.model.dropout, config.model.lora_dropout = 0.0, 0.0
config.train.max_steps, config.train.eval_every, config.train.lr = 6, 3, 3e-3
config.train.batch_size, config.train.grad_accum = batch, grad_accum
config.output = output
result = train(config, resume=mode == "resume", progress=False, keep_model=True)
weights = {name: tensor.detach().float().contiguous() for name, tensor in trainable_state_dict(result.model).items()}
digest = hashlib.sha256()
for name, tensor in sorted(weights.items()):
    digest.update(name.encode())
    digest.update(tensor.numpy().tobytes())
rank = os.environ.get("RANK", "0")
(Path(hashes) / f"rank{rank}.sha").write_text(digest.hexdigest())
