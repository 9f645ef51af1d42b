"""Training runs unchanged under torchrun and accelerate launch, on one machine or several.

Processes on CPU talk over gloo. "Nodes" here are separate launcher processes on loopback, each in its own
working directory with a relative --output, so the second node sees no run folder: as on machines that don't
share a disk, only rank 0 may read or write it.
"""
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from test_workflow import write_seq_csv

WORKER = str(Path(__file__).with_name("ddp_worker.py"))
PRESET = Path(__file__).parents[1] / "configs" / "accelerate" / "multi_node.yaml"  # the README's preset
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFORMERS_VERBOSITY": "error"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def data(tmp_path):
    return write_seq_csv(tmp_path / "train.csv", 48, 0), write_seq_csv(tmp_path / "dev.csv", 8, 1)


def worker_args(model, data, output, hashes, batch, grad_accum, mode="fresh"):
    return [WORKER, str(model), str(data[0]), str(data[1]), str(output), str(hashes), str(batch), str(grad_accum), mode]


def two_nodes(launcher, nodes, args, timeout=600):
    """Start node 0 and node 1 (each one process) of a 2-machine launch, each in its own folder; wait for both."""
    port = free_port()
    procs = []
    for rank, cwd in enumerate(nodes):
        cwd.mkdir(exist_ok=True)
        if launcher == "torchrun":
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
                   f"--node_rank={rank}", "--master_addr=127.0.0.1", f"--master_port={port}"]
        else:
            cmd = [sys.executable, "-m", "accelerate.commands.launch", f"--config_file={PRESET}",
                   f"--machine_rank={rank}", "--main_process_ip=127.0.0.1", f"--main_process_port={port}"]
        procs.append(subprocess.Popen(cmd + args, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True, start_new_session=True))
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:  # a node left waiting for a peer that failed must not outlive the test
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return [p.returncode for p in procs], outputs


def one_process_reference(tiny_models, data, tmp_path):
    """The run of one process with batch 4 x 2 accumulated (in tmp_path/one; its weights' hash in single/), and
    the folders for the two nodes' hashes and working directories."""
    single, hashes = tmp_path / "single", tmp_path / "hashes"
    single.mkdir()
    hashes.mkdir()
    proc = subprocess.run([sys.executable, *worker_args(tiny_models["llama"], data, tmp_path / "one", single, 4, 2)],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return single, hashes, [tmp_path / "node0", tmp_path / "node1"]


def test_two_process_ddp_on_cpu(tiny_models, data, tmp_path):
    hashes = tmp_path / "hashes"
    hashes.mkdir()
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           *worker_args(tiny_models["llama"], data, run, hashes, 4, 1)]
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rank0, rank1 = (hashes / "rank0.sha").read_text(), (hashes / "rank1.sha").read_text()
    assert rank0 == rank1, "ranks diverged: DDP did not keep the replicas in sync"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 6
    log = (run / "log.jsonl").read_text().splitlines()
    steps = [(json.loads(line)["type"], json.loads(line)["step"]) for line in log]
    assert len(steps) == len(set(steps)), "a log line was written twice: only rank 0 may write"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.csv", "hashes", "run", "train.csv"]


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_nodes_equal_one_process_with_the_same_global_batch(tiny_models, data, tmp_path, launcher):
    """2 nodes x batch 4 take the steps of 1 process x batch 4 x 2 accumulated: the same weights (bit for bit:
    averaging two gradients over ranks or over micro-batches is the same sum halved), the same metrics."""
    single, hashes, nodes = one_process_reference(tiny_models, data, tmp_path)
    codes, outputs = two_nodes(launcher, nodes, worker_args(tiny_models["llama"], data, "run", hashes, 4, 1))
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert (hashes / "rank0.sha").read_text() == (hashes / "rank1.sha").read_text(), "the nodes' weights diverged"
    assert (hashes / "rank0.sha").read_text() == (single / "rank0.sha").read_text(), \
        "2 nodes x batch 4 did not take the steps of 1 process with batch 4 x 2 accumulated"
    two, one = (json.loads((d / "metrics.json").read_text()) for d in (nodes[0] / "run", tmp_path / "one"))
    assert two["validation"] == one["validation"] and two["steps"] == one["steps"] == 6
    assert two["train_tokens"] == one["train_tokens"], "the ranks did not see the same examples as one process"
    assert not (nodes[1] / "run").exists() and not (nodes[1] / "run.incomplete").exists(), "node 1 wrote a run"


def test_two_nodes_resume_without_a_shared_disk(tiny_models, data, tmp_path):
    """A 2-node run killed after its first checkpoint resumes to the weights of an uninterrupted run, though
    node 1 has no copy of the run folder: rank 0 reads the checkpoint and sends it."""
    single, hashes, nodes = one_process_reference(tiny_models, data, tmp_path)
    args = worker_args(tiny_models["llama"], data, "run", hashes, 4, 1, "interrupt")
    codes, outputs = two_nodes("torchrun", nodes, args)
    assert codes[0] != 0 and "interrupted at step 6" in outputs[0]
    assert (nodes[0] / "run.incomplete" / "checkpoint").is_dir() and not list(hashes.iterdir())

    codes, outputs = two_nodes("torchrun", nodes, args[:-1] + ["resume"])
    assert codes == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    assert (hashes / "rank0.sha").read_text() == (hashes / "rank1.sha").read_text() == (single / "rank0.sha").read_text()
    evals = [[json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
             for run in (nodes[0] / "run", tmp_path / "one")]
    evals = [[(r["step"], r["loss"], r["metrics"]) for r in log if r["type"] == "eval"] for log in evals]
    assert evals[0] == evals[1] and [e[0] for e in evals[0]] == [3, 6]
    assert list(nodes[1].iterdir()) == []


def test_a_refusal_on_rank_zero_stops_every_node(tiny_models, data, tmp_path):
    """Resuming when node 0 has nothing to resume: every rank stops with rank 0's message (none waits for it)."""
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    codes, outputs = two_nodes("torchrun", nodes, worker_args(tiny_models["llama"], data, "run", tmp_path, 4, 1,
                                                              "resume"), timeout=300)
    assert codes[0] != 0 and codes[1] != 0
    for out in outputs:
        assert "nothing to resume" in out


@pytest.mark.parametrize("kind", ["FSDP", "DEEPSPEED"])
def test_sharded_launches_are_refused_with_a_clear_error(kind):
    """accelerate turns FSDP/DeepSpeed configs into plain DDP on CPUs, so these launches can only happen on GPUs:
    there, lsllm stops at once with what to do instead of hanging at rank 0's first validation."""
    from accelerate.utils import DistributedType

    from lsllm.errors import ConfigError
    from lsllm.training.ranks import check_data_parallel

    with pytest.raises(ConfigError, match=f"launched with {kind}.*DDP"):
        check_data_parallel(SimpleNamespace(distributed_type=DistributedType[kind]))
    check_data_parallel(SimpleNamespace(distributed_type=DistributedType.MULTI_CPU))
    check_data_parallel(SimpleNamespace(distributed_type=DistributedType.MULTI_GPU))
