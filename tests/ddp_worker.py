"""Run by test_distributed.py under torch.distributed.run: train, then record this rank's weights' hash."""
import hashlib
import sys
from pathlib import Path

from lsllm.config import RunConfig
from lsllm.training.checkpoint import trainable_state_dict
from lsllm.training.loop import train

model_dir, train_file, dev_file, output, hashes = sys.argv[1:6]
config = RunConfig()
config.data.train, config.data.validation = train_file, dev_file
config.model.model = model_dir
config.train.max_steps, config.train.eval_every, config.train.batch_size, config.train.lr = 6, 3, 4, 3e-3
config.output = output
result = train(config, progress=False, keep_model=True)
digest = hashlib.sha256()
for name, tensor in sorted(trainable_state_dict(result.model).items()):
    digest.update(name.encode())
    digest.update(tensor.detach().float().numpy().tobytes())
rank = __import__("os").environ.get("RANK", "0")
(Path(hashes) / f"rank{rank}.sha").write_text(digest.hexdigest())
