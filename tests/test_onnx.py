"""ONNX export (`lsllm export --format onnx [--int8]`) and running it with onnxruntime: the graph computes what the
merged PyTorch model computes (attention mode, padding mask, pooling, head), and predict/eval/serve take the folder."""
import json
import sys

import numpy as np
import pytest
import torch

from lsllm.cli import main
from lsllm.config import ModelConfig
from lsllm.errors import LsllmError, ModelSourceError
from lsllm.inference.onnx_runtime import OnnxModel, load_onnx
from lsllm.model.build import build_model, load_model, save_model
from lsllm.model.export import export_model
from lsllm.model.spec import ModelSpec
from lsllm.predict import Predictor, predict

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

# (name, base, task, bidirectional, pooling)
CASES = [("causal-last", "llama", "seq", False, "last"), ("un-mean", "llama", "seq", True, "mean"),
         ("un-max", "llama", "seq", True, "max"), ("un-token", "llama", "token", True, None),
         ("causal-token", "llama", "token", False, None), ("bert-first", "bert", "seq", True, "first")]


def _padded_batch(vocab: int):
    """Three rows of different lengths (7, 4, 2 real tokens), right-padded."""
    ids = torch.tensor([[8, 9, 10, 11, 12, 13, 14], [15, 16, 17, 18, 0, 0, 0], [19, 20, 0, 0, 0, 0, 0]]) % vocab
    mask = (torch.arange(7) < torch.tensor([[7], [4], [2]])).long()
    return ids, mask


@pytest.fixture(scope="module")
def exports(tiny_models, tmp_path_factory):
    """name -> (model folder, ONNX export folder): tiny models with random (non-zero) LoRA weights, so the export
    has something to fold in."""
    root = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, base, task, bidirectional, pooling in CASES:
        config = ModelConfig(model=str(tiny_models[base]), task=task, bidirectional=bidirectional, pooling=pooling)
        model, tokenizer = build_model(config, ["neg", "pos", "mixed"], max_length=32)
        with torch.no_grad():
            for param_name, param in model.named_parameters():
                if "lora_B" in param_name:
                    param.normal_(0, 0.05)
        save_model(model, tokenizer, root / name / "model")
        out[name] = (root / name / "model", export_model(root / name / "model", root / name / "onnx", format="onnx"))
    return out


def _torch_and_onnx(exports, name):
    folder, onnx_folder = exports[name]
    model, _ = load_model(folder, merge=True)
    return model, OnnxModel(onnx_folder, ModelSpec.load(onnx_folder))


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_onnx_logits_equal_the_merged_pytorch_model_on_a_padded_batch(exports, name):
    model, onnx = _torch_and_onnx(exports, name)
    ids, mask = _padded_batch(model.backbone.config.vocab_size)
    with torch.no_grad():
        expected = model(ids, mask).logits
    got = onnx(ids, mask).logits
    assert got.shape == expected.shape
    assert got.shape == ((3, 7, 3) if model.spec.task == "token" else (3, 3))
    real = mask.bool() if model.spec.task == "token" else slice(None)  # pad positions of token logits are unused
    assert torch.allclose(got[real], expected[real], atol=1e-3, rtol=0), (got[real] - expected[real]).abs().max()
    # The same row alone (batch 1, its own length) gives the same logits: padding is masked in the graph.
    for row, length in enumerate(mask.sum(1).tolist()):
        alone = onnx(ids[row:row + 1, :length], mask[row:row + 1, :length]).logits[0]
        padded = got[row, :length] if model.spec.task == "token" else got[row]
        assert torch.allclose(alone, padded, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name, sees_future", [("un-token", True), ("causal-token", False)])
def test_the_exported_graph_keeps_the_attention_mode(exports, name, sees_future):
    _, onnx = _torch_and_onnx(exports, name)
    ids, mask = _padded_batch(128)
    changed = ids.clone()
    changed[0, 6] = 40  # the last token of the first row
    first = onnx(ids, mask).logits[0, 0]
    first_changed = onnx(changed, mask).logits[0, 0]
    assert (not torch.allclose(first, first_changed, atol=1e-6)) == sees_future


def test_export_folder_holds_the_graph_tokenizer_spec_card_and_marker(exports):
    _, folder = exports["un-mean"]
    names = {p.name for p in folder.iterdir()}
    assert {"model.onnx", "lsllm.json", "export.json", "README.md", "tokenizer.json"} <= names
    assert not names & {"adapter", "backbone", "head.safetensors", "float.onnx"}
    spec = ModelSpec.load(folder)
    assert (spec.format, spec.merged, spec.lora, spec.pooling) == ("onnx", True, {}, "mean")
    assert json.loads((folder / "export.json").read_text())["format"] == "onnx"
    card = (folder / "README.md").read_text()
    assert "ONNX export" in card and "onnxruntime" in card and "- onnx" in card


@pytest.fixture(scope="module")
def cli_exports(tiny_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_cli")
    out = {}
    for kind, extra in [("seq", []), ("token", []), ("seq-int8", ["--int8"])]:
        run = tiny_runs[kind.split("-")[0]]
        assert main(["export", str(run), "--format", "onnx", *extra, "--output", str(root / kind)]) == 0
        out[kind] = root / kind
    return out


TEXTS = ["the movie was good fun", "a bad and boring plot", "john", "the film is great , i love the actor"]


def test_predict_on_the_export_equals_predict_on_the_run(tiny_runs, cli_exports):
    for kind in ("seq", "token"):
        # The export computes in float32: so does the run here (`auto` is bf16 autocast on CPUs with AVX512-BF16).
        from_run = Predictor(tiny_runs[kind], precision="fp32").predict_rows(TEXTS)
        from_onnx = predict(cli_exports[kind], texts=TEXTS)
        key = "label" if kind == "seq" else "tags"
        assert [r[key] for r in from_onnx] == [r[key] for r in from_run]
        if kind == "seq":
            np.testing.assert_allclose([list(r["probs"].values()) for r in from_onnx],
                                       [list(r["probs"].values()) for r in from_run], atol=1e-4)
        else:
            np.testing.assert_allclose([s for r in from_onnx for s in r["scores"]],
                                       [s for r in from_run for s in r["scores"]], atol=1e-4)


def test_int8_export_predicts_and_is_smaller(tiny_runs, cli_exports):
    rows = predict(cli_exports["seq-int8"], texts=TEXTS)
    assert [r["label"] for r in rows] and {r["label"] for r in rows} <= set(ModelSpec.load(cli_exports["seq"]).labels)
    assert json.loads((cli_exports["seq-int8"] / "export.json").read_text())["int8"] is True
    assert (cli_exports["seq-int8"] / "model.onnx").stat().st_size < (cli_exports["seq"] / "model.onnx").stat().st_size


def test_eval_and_serve_take_the_export(tiny_runs, cli_exports, tmp_path):
    from lsllm.serve.model import load_served_model
    from tests.test_workflow import write_seq_csv

    data = write_seq_csv(tmp_path / "dev.csv", 16, 1)
    assert main(["eval", str(tiny_runs["seq"]), "--data", str(data), "--split-name", "x"]) == 0
    assert main(["eval", str(cli_exports["seq"]), "--data", str(data), "--split-name", "x"]) == 0
    from_run = json.loads((tiny_runs["seq"] / "eval_x.json").read_text())
    from_onnx = json.loads((cli_exports["seq"] / "eval_x.json").read_text())
    assert from_onnx["accuracy"] == from_run["accuracy"]
    assert from_onnx["loss"] == pytest.approx(from_run["loss"], abs=1e-4)
    served = load_served_model(cli_exports["token"])
    assert served.info["format"] == "onnx"
    assert served.calibrate(repeats=1) > 0


def test_int8_needs_format_onnx_and_format_is_checked(tiny_runs, tmp_path, capsys):
    assert main(["export", str(tiny_runs["seq"]), "--int8", "--output", str(tmp_path / "x")]) == 2
    assert main(["export", str(tiny_runs["seq"]), "--format", "tflite", "--output", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "--int8 quantizes an ONNX export: add --format onnx" in err and "use hf or onnx" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    with pytest.raises(LsllmError, match="add --format onnx"):
        export_model(tiny_runs["seq"] / "model", tmp_path / "z", int8=True)


def test_an_onnx_export_never_replaces_a_users_folder(tiny_runs, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["export", str(tiny_runs["seq"]), "--format", "onnx", "--output", str(mine), "--overwrite"]) == 2
    assert "not an lsllm export" in capsys.readouterr().err and (mine / "notes.txt").read_text() == "keep"


def test_missing_or_corrupt_graph_and_missing_onnxruntime_are_clear_errors(cli_exports, tmp_path, monkeypatch):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(cli_exports["seq"], broken)
    (broken / "model.onnx").unlink()
    with pytest.raises(ModelSourceError, match=r"model\.onnx is missing"):
        Predictor(broken)
    (broken / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(ModelSourceError, match=r"model\.onnx is not a readable ONNX model"):
        Predictor(broken)
    with pytest.raises(ModelSourceError, match="is an ONNX export"):
        load_model(cli_exports["seq"])  # no PyTorch weights: merge/export/train refuse it clearly
    with pytest.raises(LsllmError, match="runs on the CPU"):
        load_onnx(cli_exports["seq"], device="cuda")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(LsllmError, match=r"pip install 'lsllm\[onnx\]'"):
        Predictor(cli_exports["seq"])


def _real_run(tmp_path, smollm2, shared_data, task):
    """A short real LS run on SmolLM2: a few dozen SST-2 sentences (causal/last) or CoNLL sentences (LS-un)."""
    from tests.test_e2e_smollm2 import _slice_conll

    def head(source, target, n):  # the header and n rows
        target.write_text("".join(source.read_text(encoding="utf-8").splitlines(keepends=True)[:n + 1]))
        return target

    if task == "seq":
        train = head(shared_data / "sst2" / "train.tsv", tmp_path / "train.tsv", 48)
        dev = head(shared_data / "sst2" / "dev.tsv", tmp_path / "dev.tsv", 16)
        extra = []
    else:
        train = _slice_conll(shared_data / "conll2003" / "train.txt", tmp_path / "train.txt", 40)
        dev = _slice_conll(shared_data / "conll2003" / "valid.txt", tmp_path / "valid.txt", 12)
        extra = ["--task", "token"]
    run = tmp_path / "run"
    assert main(["train", "--model", smollm2, "--train", str(train), "--validation", str(dev), "--max-steps", "6",
                 "--batch-size", "8", "--lr", "1e-3", "--output", str(run), *extra]) == 0
    return run, dev


@pytest.mark.slow
@pytest.mark.parametrize("task", ["seq", "token"])
def test_real_smollm2_onnx_equals_pytorch(smollm2, shared_data, tmp_path, task):
    from lsllm.data.encode import collate, encode
    from lsllm.data.labels import LabelSet
    from lsllm.data.readers import read_examples

    run, dev = _real_run(tmp_path, smollm2, shared_data, task)
    assert main(["export", str(run), "--format", "onnx", "--output", str(tmp_path / "onnx")]) == 0
    model, tokenizer = load_model(run / "model", merge=True)
    onnx, _ = load_onnx(tmp_path / "onnx")
    examples = read_examples(dev, task)
    features = encode(examples, task, tokenizer, LabelSet(model.spec.labels), model.spec.max_length,
                      model.spec.label_all_subtokens)
    batch = collate(features, tokenizer.pad_token_id)  # every dev example in one right-padded batch
    with torch.no_grad():
        expected = model(batch["input_ids"], batch["attention_mask"]).logits
    got = onnx(batch["input_ids"], batch["attention_mask"]).logits
    real = batch["attention_mask"].bool() if task == "token" else slice(None)
    assert torch.allclose(got[real], expected[real], atol=1e-3, rtol=0), (got[real] - expected[real]).abs().max()
    assert [r.get("label", r.get("tags")) for r in predict(tmp_path / "onnx", input=dev)] == \
           [r.get("label", r.get("tags")) for r in predict(run, input=dev)]
