"""Training runs unchanged under torchrun: 2 CPU processes (gloo) end with identical weights, rank 0 writes."""
import json
import os
import subprocess
import sys
from pathlib import Path

from test_workflow import write_seq_csv


def test_two_process_ddp_on_cpu(tiny_models, tmp_path):
    train_file = write_seq_csv(tmp_path / "train.csv", 48, 0)
    dev_file = write_seq_csv(tmp_path / "dev.csv", 8, 1)
    hashes = tmp_path / "hashes"
    hashes.mkdir()
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           str(Path(__file__).with_name("ddp_worker.py")), str(tiny_models["llama"]), str(train_file), str(dev_file),
           str(run), str(hashes)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (hashes / "rank0.sha").read_text(), (hashes / "rank1.sha").read_text()
    assert rank0 == rank1, "ranks diverged: DDP did not keep the replicas in sync"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 6
    log = (run / "log.jsonl").read_text().splitlines()
    steps = [(json.loads(line)["type"], json.loads(line)["step"]) for line in log]
    assert len(steps) == len(set(steps)), "a log line was written twice: only rank 0 may write"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.csv", "hashes", "run", "train.csv"]
