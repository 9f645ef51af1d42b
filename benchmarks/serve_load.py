#!/usr/bin/env python
"""Bounded load test of `lsllm serve` on 127.0.0.1: the script starts and stops the server itself.

    python benchmarks/serve_load.py SEQ_RUN [--token-run TOKEN_RUN] [--requests 2000] [--out FILE.json]

For each run (a sequence classifier answering POST /predict, a tagger answering POST /tag), over the real
validation sentences of SST-2 / CoNLL-2003 (../shared/data; one text per request):
  - concurrency 1, 8, 32, 128 keep-alive clients: requests/s, texts/s, p50/p95/p99 latency, errors, and
    the server's RSS before and after (a long run at concurrency 32 shows whether memory grows);
  - texts/s at concurrency 32 as a share of offline prediction (`Predictor.predict_rows` over the same texts
    in one call, as `lsllm predict --input` does, model load excluded), measured in the same run;
  - the gain of dynamic batching: the same load against a server started with --max-batch-size 1;
  - offline prediction one text per forward pass: the most any batching can gain on this machine;
  - a mixed run where every 10th request is malformed JSON, empty, of the wrong type or oversize: every
    good answer must equal offline prediction's label, every bad one its 4xx, and no 5xx;
  - with --soak N, N more requests at concurrency 32 and the server's RSS after every tenth of them.
Clients are asyncio streams in this process (cheap on the 2 cores the server also uses).
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

from lsllm.serve.process import ServerProcess

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CONCURRENCY = (1, 8, 32, 128)


async def _client(port: int, jobs: asyncio.Queue, results: list) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while True:
            try:
                index, path, body = jobs.get_nowait()
            except asyncio.QueueEmpty:
                return
            started = time.perf_counter()
            writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            await writer.drain()
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            answer = await reader.readexactly(length)
            results.append((index, status, time.perf_counter() - started, answer))
    finally:
        writer.close()


def load(port: int, requests: list[tuple[str, bytes]], concurrency: int, time_limit: float) -> dict:
    """Send every request once from `concurrency` keep-alive clients; latency and throughput."""
    async def go():
        jobs: asyncio.Queue = asyncio.Queue()
        for i, (path, body) in enumerate(requests):
            jobs.put_nowait((i, path, body))
        results: list = []
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(_client(port, jobs, results) for _ in range(concurrency))),
                               time_limit)
        return results, time.perf_counter() - started

    results, seconds = asyncio.run(go())
    latencies = sorted(r[2] for r in results)

    def pct(q):
        return 1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    return {"concurrency": concurrency, "requests": len(results), "seconds": seconds,
            "requests_per_s": len(results) / seconds, "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "mean_ms": 1000 * statistics.fmean(latencies), "errors": sum(r[1] != 200 for r in results),
            "results": results}


def texts_for(task: str, n: int, seed: int = 0) -> list[str]:
    sys.path.insert(0, str(ROOT / "src"))
    from lsllm.data.readers import read_examples

    if task == "seq":
        texts = [e.text for e in read_examples(DATA / "sst2" / "dev.tsv", "seq")]
    else:
        texts = [" ".join(e.tokens) for e in read_examples(DATA / "conll2003" / "valid.txt", "token")]
    rng = random.Random(seed)
    return [rng.choice(texts) for _ in range(n)]


def offline(run: Path, texts: list[str], batch_size: int = 32) -> tuple[float, list]:
    """Texts/s of offline prediction over `texts` (model load excluded), and its labels/tags."""
    from lsllm.predict import Predictor

    predictor = Predictor(run, batch_size=batch_size)
    predictor.predict_rows(texts[:32])  # warm-up
    started = time.perf_counter()
    rows = predictor.predict_rows(texts)
    seconds = time.perf_counter() - started
    return len(texts) / seconds, [r["label"] if "label" in r else [e["start"] for e in r["entities"]] for r in rows]


def request(task: str, text: str) -> tuple[str, bytes]:
    if task == "seq":
        return "/predict", json.dumps({"inputs": text, "truncate": True}).encode()
    return "/tag", json.dumps({"inputs": text}).encode()


BAD = [b"{not json", b"", b'{"inputs": ""}', b'{"inputs": 5}', b'{"inputs": []}']


def answer_key(task: str, answer: bytes):
    data = json.loads(answer)
    return data[0]["label"] if task == "seq" else [e["start"] for e in data]


def level(server: ServerProcess, task: str, texts: list[str], concurrency: int, args) -> dict:
    n = len(texts) if concurrency == 32 else min(len(texts), max(50, args.requests // (8 if concurrency == 1 else 2)))
    stats = load(server.port, [request(task, t) for t in texts[:n]], concurrency, args.time_limit)
    stats.pop("results")
    stats["rss_after_mib"] = server.rss_mib()
    print(f"  {task} c={concurrency}: {stats['requests_per_s']:.1f} req/s, p50 {stats['p50_ms']:.0f} ms, "
          f"p99 {stats['p99_ms']:.0f} ms, errors {stats['errors']}, RSS {stats['rss_after_mib']:.0f} MiB", flush=True)
    return stats


def mixed_run(server: ServerProcess, task: str, unique: list[str], expected: dict, args) -> dict:
    """Every 10th request bad (malformed, empty, mistyped or oversize): good ones must be right, bad ones 4xx."""
    mixed, kinds = [], []
    for i, text in enumerate(unique):
        if i % 10 == 9:
            body = BAD[i // 10 % len(BAD)] if i // 10 % 6 else json.dumps({"inputs": "x " * 400_000}).encode()
            mixed.append(("/predict" if task == "seq" else "/tag", body))
            kinds.append("bad")
        else:
            mixed.append(request(task, text))
            kinds.append(text)
    stats = load(server.port, mixed, 32, args.time_limit)
    good = [r for r in stats["results"] if kinds[r[0]] != "bad"]
    bad = [r for r in stats["results"] if kinds[r[0]] == "bad"]
    result = {"good": len(good), "bad": len(bad),
              "good_ok": sum(r[1] == 200 and answer_key(task, r[3]) == expected[kinds[r[0]]] for r in good),
              "bad_4xx": sum(400 <= r[1] < 500 for r in bad), "5xx": sum(r[1] >= 500 for r in stats["results"]),
              # what went wrong, when something did: the request, its status and the start of the answer
              "unexpected": [(mixed[r[0]][1][:60].decode(errors="replace"), r[1], r[3][:200].decode(errors="replace"))
                             for r in stats["results"] if (kinds[r[0]] == "bad") != (r[1] >= 400) or r[1] >= 500]}
    print(f"  {task} mixed: {result}", flush=True)
    return result


def soak(server: ServerProcess, task: str, args) -> dict:
    """`args.soak` more requests at concurrency 32, in ten rounds, the server's RSS after each: memory must not
    grow with requests once every batch shape has been seen."""
    texts = texts_for(task, args.soak, seed=2)
    rounds, step = [], max(1, args.soak // 10)
    for start in range(0, len(texts), step):
        stats = load(server.port, [request(task, t) for t in texts[start:start + step]], 32, args.time_limit)
        rounds.append({"requests": start + stats["requests"], "errors": stats["errors"],
                       "requests_per_s": stats["requests_per_s"], "rss_mib": server.rss_mib()})
        print(f"  {task} soak: {rounds[-1]}", flush=True)
    return {"rounds": rounds, "errors": sum(r["errors"] for r in rounds),
            "rss_growth_mib": rounds[-1]["rss_mib"] - rounds[0]["rss_mib"]}


def workload(run: Path, task: str, args) -> dict:
    unique = texts_for(task, 400, seed=1)
    texts = texts_for(task, args.requests, seed=0)
    out = {"run": str(run), "task": task}
    rate, labels = offline(run, unique)
    expected = dict(zip(unique, labels))
    out["offline_texts_per_s"] = rate
    # One text per forward pass, offline: no server can gain more from batching than offline / this.
    out["offline_batch1_texts_per_s"] = offline(run, unique[:120], batch_size=1)[0]
    with ServerProcess(run, timeout=600) as server:
        out["rss_start_mib"] = server.rss_mib()
        out["levels"] = [level(server, task, texts, c, args) for c in CONCURRENCY]
        out["mixed"] = mixed_run(server, task, unique, expected, args)
        out["rss_end_mib"] = server.rss_mib()
        if args.soak:
            out["soak"] = soak(server, task, args)
    out["server_exit"] = server.proc.returncode
    with ServerProcess(run, "--max-batch-size", "1", timeout=600) as single:
        n = min(len(texts), max(200, args.requests // 4))
        stats = load(single.port, [request(task, t) for t in texts[:n]], 32, args.time_limit)
        stats.pop("results")
    out["batch1_c32"] = stats
    c32 = next(lv for lv in out["levels"] if lv["concurrency"] == 32)
    out["share_of_offline_c32"] = c32["requests_per_s"] / rate
    out["batching_gain_c32"] = c32["requests_per_s"] / stats["requests_per_s"]
    out["batching_ceiling"] = rate / out["offline_batch1_texts_per_s"]
    print(f"  {task}: c32 = {out['share_of_offline_c32']:.0%} of offline ({rate:.1f} texts/s); dynamic batching "
          f"{out['batching_gain_c32']:.2f}x batch size 1 (offline batch 32 / batch 1: {out['batching_ceiling']:.2f}x)",
          flush=True)
    return out


def table(results: list[dict]) -> str:
    lines = ["| run | clients | requests | req/s | p50 ms | p95 ms | p99 ms | errors | server RSS MiB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for level in r["levels"]:
            lines.append(f"| {r['task']} | {level['concurrency']} | {level['requests']} | {level['requests_per_s']:.1f} "
                         f"| {level['p50_ms']:.0f} | {level['p95_ms']:.0f} | {level['p99_ms']:.0f} | {level['errors']} "
                         f"| {level['rss_after_mib']:.0f} |")
    lines += ["", "| run | offline texts/s | c32 share of offline | batch-1 server req/s (c32) | batching gain | "
                  "offline batch 32 / batch 1 | "
                  "RSS start -> end MiB | mixed: good right / bad 4xx / 5xx |", "|---|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        m = r["mixed"]
        lines.append(f"| {r['task']} | {r['offline_texts_per_s']:.1f} | {r['share_of_offline_c32']:.0%} | "
                     f"{r['batch1_c32']['requests_per_s']:.1f} | {r['batching_gain_c32']:.2f}x | {r['batching_ceiling']:.2f}x | "
                     f"{r['rss_start_mib']:.0f} -> {r['rss_end_mib']:.0f} | {m['good_ok']}/{m['good']} / "
                     f"{m['bad_4xx']}/{m['bad']} / {m['5xx']} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("seq_run", type=Path)
    p.add_argument("--token-run", type=Path)
    p.add_argument("--requests", type=int, default=2000, help="requests at concurrency 32 (others get fewer)")
    p.add_argument("--time-limit", type=float, default=900, help="seconds per load level before it is cut off")
    p.add_argument("--soak", type=int, default=0,
                   help="then this many more requests at concurrency 32, RSS after every tenth (memory growth)")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    print(f"# serve load test {datetime.datetime.now().isoformat(timespec='seconds')}, {os.cpu_count()} cores")
    results = [workload(args.seq_run, "seq", args)]
    if args.token_run:
        results.append(workload(args.token_run, "token", args))
    print(table(results))
    for r in results:
        if "soak" in r:
            rss = " -> ".join(f"{x['rss_mib']:.0f}" for x in r["soak"]["rounds"])
            print(f"soak {r['task']}: {r['soak']['rounds'][-1]['requests']} requests, {r['soak']['errors']} errors, "
                  f"RSS MiB after each tenth: {rss}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
