import json
import math
import os

import matplotlib.image as mpimg
import matplotlib.pyplot as plt
import numpy as np
import pytest

from lsllm import files
from lsllm.files import write_json_atomic, write_text_atomic
from lsllm.report import plot_confusion, plot_curves, save_figure_atomic


def _assert_png(path):
    assert path.exists() and path.stat().st_size > 0
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 10 and image.shape[1] > 10


def _no_temp_files(folder):
    return [p.name for p in folder.iterdir() if ".tmp" in p.name] == []


def _records():
    recs = [{"type": "train", "step": s, "loss": 2.0 / s, "lr": 1e-4, "tokens_per_s": 1000.0} for s in range(1, 31)]
    for s in (10, 20, 30):
        recs.append({"type": "eval", "step": s, "split": "validation", "loss": 1.0 / s,
                     "metrics": {"accuracy": s / 40, "macro_f1": s / 50}, "main_metric": "accuracy"})
    return recs


def test_plot_curves_full(tmp_path):
    out = tmp_path / "curves.png"
    plot_curves(_records(), out)
    _assert_png(out)
    assert _no_temp_files(tmp_path)
    assert plt.get_fignums() == []  # figure closed


def test_plot_curves_no_eval_single_point_empty_and_nan(tmp_path):
    plot_curves([r for r in _records() if r["type"] == "train"], tmp_path / "a.png")
    plot_curves([{"type": "train", "step": 1, "loss": 1.5, "lr": 0.1, "tokens_per_s": 1.0}], tmp_path / "b.png")
    plot_curves([{"type": "eval", "step": 5, "split": "validation", "loss": 0.3,
                  "metrics": {"f1": 0.7}, "main_metric": "f1"}], tmp_path / "c.png")
    plot_curves([], tmp_path / "d.png")
    plot_curves([{"type": "train", "step": 1, "loss": math.nan, "lr": 0.1, "tokens_per_s": 1.0},
                 {"type": "train", "step": 2, "loss": 1.0, "lr": 0.1, "tokens_per_s": 1.0},
                 {"type": "eval", "step": 2, "split": "test", "loss": None, "metrics": {}, "main_metric": "f1"}],
                tmp_path / "e.png")
    for name in "abcde":
        _assert_png(tmp_path / f"{name}.png")
    assert _no_temp_files(tmp_path)


def test_plot_confusion_small_and_30_labels(tmp_path):
    plot_confusion([[5, 1, 0], [2, 3, 1], [0, 0, 4]], ["neg", "neu", "pos"], tmp_path / "small.png")
    _assert_png(tmp_path / "small.png")
    rng = np.random.default_rng(0)
    labels = [f"label_with_a_long_name_{i}" for i in range(30)]
    matrix = rng.integers(0, 20, size=(30, 30)).tolist()
    plot_confusion(matrix, labels, tmp_path / "big.png")
    _assert_png(tmp_path / "big.png")
    plot_confusion([[0, 0], [0, 0]], ["a", "b"], tmp_path / "zeros.png")  # empty rows
    _assert_png(tmp_path / "zeros.png")
    with pytest.raises(ValueError):
        plot_confusion([[1, 2]], ["a", "b"], tmp_path / "bad.png")
    assert _no_temp_files(tmp_path)


def test_write_text_atomic_overwrites_creates_dirs_and_keeps_newlines(tmp_path):
    path = tmp_path / "sub" / "report.txt"
    write_text_atomic(path, "first\n")
    write_text_atomic(path, "zweite Zeile – ünïcode\nline2\n")
    assert path.read_bytes() == "zweite Zeile – ünïcode\nline2\n".encode("utf-8")
    assert os.listdir(path.parent) == ["report.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_write_json_atomic_format(tmp_path):
    path = tmp_path / "m.json"
    obj = {"z": 1, "a": [1, 2], "name": "Zürich", "np": np.float32(0.5), "arr": np.arange(3)}
    write_json_atomic(path, obj)
    text = path.read_text(encoding="utf-8")
    assert "Zürich" in text  # ensure_ascii=False
    assert text.index('"z"') < text.index('"a"')  # key order kept
    assert '\n  "z": 1' in text  # indent=2
    assert json.loads(text) == {"z": 1, "a": [1, 2], "name": "Zürich", "np": 0.5, "arr": [0, 1, 2]}
    assert os.listdir(tmp_path) == ["m.json"]


def test_failed_write_keeps_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "keep.json"
    write_json_atomic(path, {"v": 1})

    def boom(src, dst):
        raise OSError("disk on fire")

    monkeypatch.setattr(files.os, "replace", boom)
    with pytest.raises(OSError):
        write_json_atomic(path, {"v": 2})
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["keep.json"]
    with pytest.raises(TypeError):  # unserialisable: fails before touching the file
        write_json_atomic(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}


def test_save_figure_atomic_closes_figure(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    save_figure_atomic(fig, tmp_path / "fig.png")
    assert not plt.fignum_exists(fig.number)
    _assert_png(tmp_path / "fig.png")
    assert os.listdir(tmp_path) == ["fig.png"]
