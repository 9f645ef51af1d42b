"""Multi-node training against one process (issue 15): step time and communication share, side by side.

    python benchmarks/multi_node.py --train train.tsv --validation dev.tsv --task seq --steps 40 \
        [--model smollm2-135m] [--out benchmarks/results/multi_node.json]

Runs the same `lsllm train` twice on this machine, one after the other, with the same global batch:
  one process: every core (torch's threads = cores), `--batch-tokens B --grad-accum 2`;
  two nodes:   two `torchrun --nnodes 2 --nproc_per_node 1` launchers on loopback, each in its own folder
               (no shared run folder), cores/2 threads each, `--batch-tokens B`;
then, in a 2-process gloo group, times the all-reduce of a float32 gradient as large as the run's trainable
weights (what DDP sends every step). DDP overlaps that with the backward pass in 25 MB buckets, so the timed
all-reduce is an upper bound of the communication per step. Prints the table and writes JSON with --out.
Results: benchmarks/RESULTS.md, section 5b.
"""
import argparse
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from safetensors import safe_open

LSLLM = [sys.executable, "-m", "lsllm.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def train_args(args, batch_tokens: int) -> list[str]:
    return ["train", "--train", str(args.train.resolve()), "--validation", str(args.validation.resolve()),
            "--task", args.task, "--model", args.model, "--max-steps", str(args.steps),
            "--eval-every", str(args.steps), "--batch-tokens", str(batch_tokens), "--output", "run"]


def one_process(args, folder: Path) -> dict:
    folder.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.cores)}
    start = time.perf_counter()
    done = subprocess.run(LSLLM + train_args(args, args.batch_tokens) + ["--grad-accum", "2"], cwd=folder, env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(done.stderr[-3000:])
    return summary(folder / "run", time.perf_counter() - start)


def two_nodes(args, folder: Path) -> dict:
    port, procs = free_port(), []
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, args.cores // 2))}
    start = time.perf_counter()
    for rank in range(2):
        node = folder / f"node{rank}"
        node.mkdir(parents=True)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
               f"--node_rank={rank}", "--master_addr=127.0.0.1", f"--master_port={port}", "-m", "lsllm.cli",
               *train_args(args, args.batch_tokens)]
        with open(node / "stderr.txt", "w") as err:
            procs.append(subprocess.Popen(cmd, cwd=node, env=env, stdout=subprocess.DEVNULL, stderr=err))
    if any(p.wait() for p in procs):
        sys.exit("a node failed:\n" + (folder / "node0" / "stderr.txt").read_text()[-3000:])
    return summary(folder / "node0" / "run", time.perf_counter() - start)


def summary(run: Path, wall: float) -> dict:
    metrics = json.loads((run / "metrics.json").read_text())
    return {"steps": metrics["steps"], "train_s": metrics["train_time_s"],
            "s_per_step": round(metrics["train_time_s"] / metrics["steps"], 3),
            "tokens_per_s": round(metrics["train_tokens"] / metrics["train_time_s"], 1), "wall_s": round(wall, 1),
            "validation": metrics["validation"][metrics["main_metric"]], "trainable": trainable_count(run / "model")}


def trainable_count(model: Path) -> int:
    """Elements in the saved adapter and head: the gradient DDP all-reduces each step."""
    total = 0
    for path in model.rglob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                total += math.prod(f.get_slice(key).get_shape())
    return total


def allreduce(elements: int, cores: int) -> float:
    """Median seconds of one float32 all-reduce of `elements` over 2 gloo processes on loopback."""
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // 2))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}",
           __file__, "--allreduce-worker", str(elements)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return float(next(line.split()[1] for line in out.splitlines() if line.startswith("ALLREDUCE")))


def allreduce_worker(elements: int) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    grad = torch.randn(elements)
    times = []
    for _ in range(25):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(grad)
        times.append(time.perf_counter() - start)
    if dist.get_rank() == 0:
        print("ALLREDUCE", statistics.median(times[5:]), flush=True)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path)
    parser.add_argument("--validation", type=Path)
    parser.add_argument("--task", default="seq")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-tokens", type=int, default=256, help="per node; one process accumulates 2")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--out", type=Path)
    parser.add_argument("--allreduce-worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.allreduce_worker:
        return allreduce_worker(args.allreduce_worker)
    with tempfile.TemporaryDirectory() as tmp:
        one = one_process(args, Path(tmp) / "one")
        nodes = two_nodes(args, Path(tmp) / "nodes")
    comm = allreduce(one["trainable"], args.cores)
    result = {"model": args.model, "train": str(args.train), "steps": args.steps, "cores": args.cores,
              "batch_tokens_global": 2 * args.batch_tokens, "one_process": one, "two_nodes": nodes,
              "allreduce_s": round(comm, 4), "comm_share": round(comm / nodes["s_per_step"], 3),
              "two_nodes_vs_one": round(one["s_per_step"] / nodes["s_per_step"], 2)}
    print(f"{'':12} {'s/step':>8} {'tokens/s':>9} {'validation':>10} {'wall s':>7}")
    for name in ("one_process", "two_nodes"):
        r = result[name]
        print(f"{name:12} {r['s_per_step']:8.3f} {r['tokens_per_s']:9.1f} {r['validation']:10.4f} {r['wall_s']:7.1f}")
    print(f"all-reduce of {one['trainable']:,} float32 gradients: {comm * 1000:.1f} ms "
          f"= {result['comm_share']:.1%} of a 2-node step; 2 nodes run at {result['two_nodes_vs_one']}x one process")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
