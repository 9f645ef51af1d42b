"""What a user must be able to rely on: runs own their folders, exports replace only exports, killed
writers leave nothing behind that is never cleaned, files are readable by others, no pickle is loaded."""
from __future__ import annotations

import fcntl
import json
import os
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from lsllm.cli import main
from lsllm.files import atomic_folder, output_lock, remove_stale_temps
from tests.test_cli_errors import STEPS, assert_one_error, run_cli, snapshot
from tests.test_workflow import write_seq_csv

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("trust")
    write_seq_csv(root / "train.csv", 32, 0)
    write_seq_csv(root / "dev.csv", 8, 1)
    assert main(["train", "--model", str(tiny_models["llama"]), "--train", str(root / "train.csv"), "--validation",
                 str(root / "dev.csv"), *STEPS, "--output", str(root / "run")]) == 0
    return root / "run"


def test_saved_folders_are_readable_by_others(run):
    for path in [run, run / "model", run / "model" / "adapter", run / "metrics.json", run / "model" / "lsllm.json"]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o044 == 0o044, (path, oct(mode))


def test_export_overwrite_replaces_only_an_earlier_export(run, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(run), "--output", str(out)]) == 0
    assert (out / "export.json").is_file() and (out / "lsllm.json").is_file()
    code, _, err = run_cli(["export", run, "--output", out], capsys)
    assert_one_error(code, err, "already exists", "--overwrite")
    assert main(["export", str(run), "--output", str(out), "--merge", "--overwrite"]) == 0
    assert json.loads((out / "export.json").read_text())["merged"] is True
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp or lock left behind


def test_export_removes_temp_folders_of_killed_exports_but_not_live_ones(run, tmp_path):
    out = tmp_path / "exported"
    dead = tmp_path / ".exported.tmp-dead"
    dead.mkdir()
    (dead / "half.safetensors").write_bytes(b"x" * 10)
    live = tmp_path / ".exported.tmp-live"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another writer is still working in it
    try:
        assert main(["export", str(run), "--output", str(out)]) == 0
        assert not dead.exists() and live.exists()
    finally:
        os.close(fd)


def test_killed_merge_export_leaves_nothing_after_the_next_export(run, tmp_path):
    """kill -9 in the middle of `export --merge`: the next export of the same output cleans up."""
    out = tmp_path / "merged"
    code = ("import sys, time; import lsllm.model.export as e; "
            "orig = e.atomic_folder\n"
            "from contextlib import contextmanager\n"
            "@contextmanager\n"
            "def slow(folder, replace=False):\n"
            "    with orig(folder, replace) as tmp:\n"
            "        yield tmp\n"
            "        print('WRITTEN', flush=True); time.sleep(60)\n"
            "e.atomic_folder = slow\n"
            f"e.export_model(e.Path({str(run / 'model')!r}), e.Path({str(out)!r}), merge=True)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "WRITTEN"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".merged.tmp-")]  # the killed writer's temp
    assert main(["export", str(run), "--output", str(out), "--merge"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_atomic_folder_refuses_to_replace_without_permission(tmp_path):
    target = tmp_path / "t"
    target.mkdir()
    (target / "keep").write_text("mine")
    from lsllm.errors import RunFolderError

    with pytest.raises(RunFolderError):
        with atomic_folder(target) as tmp:
            (tmp / "new").write_text("x")
    assert (target / "keep").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["t"]
    remove_stale_temps(target)


def test_output_lock_is_exclusive_and_released(tmp_path):
    from lsllm.errors import RunFolderError

    target = tmp_path / "run"
    with output_lock(target):
        code = (f"from lsllm.files import output_lock\n"
                f"try:\n    output_lock({str(target)!r}).__enter__()\nexcept Exception as e:\n    print(e)")
        other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
        assert "in use by another lsllm process" in other.stdout and str(os.getpid()) in other.stdout
    assert not list(tmp_path.iterdir())
    with output_lock(target):  # free again
        pass
    with pytest.raises(RunFolderError):
        with output_lock(target):
            with output_lock(target):
                pass


def test_two_trainings_at_the_same_output(tiny_models, tmp_path):
    """Both start; one wins and writes a whole run, the other gets one clear error and touches nothing."""
    write_seq_csv(tmp_path / "train.csv", 64, 0)
    write_seq_csv(tmp_path / "dev.csv", 16, 1)
    out = tmp_path / "run"

    def start(seed):
        args = ["train", "--model", str(tiny_models["llama"]), "--train", str(tmp_path / "train.csv"),
                "--validation", str(tmp_path / "dev.csv"), "--max-steps", "60", "--eval-every", "10", "--batch-size", "8",
                "--seed", str(seed), "--output", str(out)]
        return subprocess.Popen([sys.executable, "-m", "lsllm.cli", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=REPO)

    # Started together: both import, check and race for the lock at about the same moment.
    first, second = start(1), start(2)
    results = [(p.wait(timeout=600), *p.communicate()) for p in (first, second)]
    codes = sorted(r[0] for r in results)
    assert codes == [0, 2], results
    loser = next(r for r in results if r[0] == 2)
    assert_one_error(2, loser[2], "in use by another lsllm process")
    winner_seed = 1 if results[0][0] == 0 else 2
    config = (out / "config.yaml").read_text()
    assert f"seed: {winner_seed}" in config  # the winner's settings only
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    evals = [r["step"] for r in log if r["type"] == "eval"]  # every 10 steps and at each epoch end (8 steps)
    assert evals == sorted({s for s in range(1, 61) if s % 10 == 0 or s % 8 == 0})
    assert [r["step"] for r in log if r["type"] == "train"] == list(range(10, 61, 10))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dev.csv", "run", "train.csv"]


def test_predict_on_a_full_disk_leaves_no_partial_output(run, tmp_path):
    """A write that fails (here: a file-size limit, as on a full disk) is one error line, no file."""
    out = tmp_path / "preds.jsonl"
    texts = sum((["--text", f"good film number {i} " * 20] for i in range(40)), [])

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    proc = subprocess.run([sys.executable, "-m", "lsllm.cli", "predict", str(run), *texts, "--output", str(out)],
                          capture_output=True, text=True, cwd=REPO, preexec_fn=limit)
    assert_one_error(proc.returncode, proc.stderr, "File too large")
    assert list(tmp_path.iterdir()) == []


def test_predict_keeps_gold_labels_the_model_does_not_know(run, tmp_path, capsys):
    data = tmp_path / "new.csv"
    data.write_text("text,label\ngood fun film,pos\nawful dull plot,terrible\n")
    code, out, err = run_cli(["predict", run, "--input", data], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["gold"] for r in rows] == ["pos", "terrible"]
    assert all(r["label"] in ("neg", "pos") for r in rows)


def test_predict_reads_plain_text_one_per_line(run, tmp_path, capsys):
    data = tmp_path / "texts.txt"
    data.write_text("good, fun film\n\nawful, dull plot, really\n")
    code, out, err = run_cli(["predict", run, "--input", data], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in rows] == ["good, fun film", "awful, dull plot, really"]
    assert all("gold" not in r for r in rows)


def test_unchanged_disk_after_a_refused_resume(run, capsys):
    before = snapshot(run.parent)
    code, _, err = run_cli(["train", "--train", run.parent / "train.csv", "--output", run, "--resume"], capsys)
    assert_one_error(code, err, "already exists")
    assert snapshot(run.parent) == before


def test_resume_refuses_changed_settings_and_accepts_a_longer_run(tiny_models, tmp_path, capsys, monkeypatch):
    import lsllm.training.loop as loop

    write_seq_csv(tmp_path / "train.csv", 32, 0)
    out = tmp_path / "run"
    base = ["train", "--model", str(tiny_models["llama"]), "--train", str(tmp_path / "train.csv"),
            "--max-steps", "2", "--eval-every", "2", "--lr", "0.001", "--output", str(out)]

    def die(*args, **kwargs):
        raise KeyboardInterrupt  # killed after the last checkpoint, before the reports

    monkeypatch.setattr(loop, "write_final_reports", die)
    assert main(base) == 130
    monkeypatch.undo()
    assert (tmp_path / "run.incomplete" / "checkpoint").is_dir()
    before = snapshot(tmp_path)
    code, _, err = run_cli(base[:-6] + ["--lr", "0.01", "--seed", "3", "--output", out, "--resume"], capsys)
    assert_one_error(code, err, "train.lr", "train.seed", "cannot resume")
    (tmp_path / "train.csv").write_text((tmp_path / "train.csv").read_text() + "one more fine film,pos\n")
    code, _, err = run_cli(base + ["--resume"], capsys)
    assert_one_error(code, err, "data.train")
    assert {k: v for k, v in snapshot(tmp_path).items() if k != "train.csv"} == \
        {k: v for k, v in before.items() if k != "train.csv"}
    write_seq_csv(tmp_path / "train.csv", 32, 0)  # the original content again
    assert main(base[:-6] + ["--max-steps", "4", "--eval-every", "2", "--lr", "0.001", "--output", str(out),
                             "--resume"]) == 0
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any(r["type"] == "resume" and "train.max_steps: 2 -> 4" in r["changes"] for r in log)
    assert json.loads((out / "metrics.json").read_text())["steps"] == 4
