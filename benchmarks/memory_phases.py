"""Where `lsllm train`'s memory goes: peak RSS per phase of one real run, in this process.

    python benchmarks/memory_phases.py -- train --train train.tsv --validation dev.tsv --task seq

Everything after `--` is an `lsllm` command line. A thread samples VmRSS every 20 ms; the library's phase
functions (model build, tokenization, training steps, validation, saving, freeing the trained model,
loading the best model, reports) are wrapped to name the phase being sampled. Prints each phase's peak in
MiB and the process's high-water mark. Results: benchmarks/RESULTS.md, section 2e.
"""
import functools
import resource
import sys
import threading
import time

phase, peaks = ["imports"], {}


def _rss_mib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) // 1024


def _sample() -> None:
    while True:
        peaks[phase[0]] = max(peaks.get(phase[0], 0), _rss_mib())
        time.sleep(0.02)


def _enter(name: str) -> None:
    time.sleep(0.05)  # let the sampler see the end of the previous phase
    phase[0] = name
    peaks[name] = max(peaks.get(name, 0), _rss_mib())


def _wrap(module, attr: str, name: str) -> None:
    inner = getattr(module, attr)

    @functools.wraps(inner)
    def wrapped(*args, **kwargs):
        outer = phase[0]
        _enter(name)
        try:
            return inner(*args, **kwargs)
        finally:
            _enter(outer)
    setattr(module, attr, wrapped)


def main() -> None:
    threading.Thread(target=_sample, daemon=True).start()
    import lsllm.cli as cli
    import lsllm.training.loop as loop
    import lsllm.training.ls as ls
    import lsllm.training.step as step

    _enter("other (data, setup)")
    for module, attr, name in [(ls, "build_model", "build model"), (ls, "encode", "tokenize"),
                               (ls, "predict_examples", "validation"), (ls, "save_model", "save best"),
                               (loop, "_free_training_model", "free trained model"),
                               (ls, "load_for_inference", "load best model"),
                               (loop, "write_final_reports", "reports")]:
        _wrap(module, attr, name)
    train_step = step.TrainStep.__call__

    def stepping(self, *args, **kwargs):
        _enter("training steps")
        return train_step(self, *args, **kwargs)
    step.TrainStep.__call__ = stepping
    sys.argv = ["lsllm"] + sys.argv[sys.argv.index("--") + 1:]
    try:
        cli.main()
    finally:
        time.sleep(0.1)
        for name, peak in peaks.items():
            print(f"{name:22s} {peak:6d} MiB peak", file=sys.stderr)
        print(f"{'whole process':22s} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024:6d} MiB (VmHWM)",
              file=sys.stderr)


if __name__ == "__main__":
    main()
