"""The one-pass GGUF converter writes what transformers' loader writes, byte for byte, and falls back to it."""
from __future__ import annotations

from pathlib import Path

import pytest

from lsllm.model import sources
from lsllm.model.gguf_convert import Unsupported, convert_gguf, tensor_table
from tests.test_model_errors import write_tiny_gguf


def assert_same_folders(fast: Path, reference: Path) -> None:
    names = sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in fast.iterdir()) == names
    for name in names:
        assert (fast / name).read_bytes() == (reference / name).read_bytes(), name


def convert_both(gguf_file: Path, root: Path) -> tuple[Path, Path]:
    fast, reference = root / "fast", root / "reference"
    fast.mkdir()
    reference.mkdir()
    convert_gguf(gguf_file, fast)
    sources._reference_dequantize(gguf_file, reference)
    return fast, reference


@pytest.mark.parametrize("quantized", [False, True], ids=["f32", "q8_0"])
def test_one_pass_conversion_writes_the_bytes_transformers_writes(tmp_path, quantized):
    # Llama's q/k permutation, the tied output head and the tokenizer are all in these bytes
    assert_same_folders(*convert_both(write_tiny_gguf(tmp_path / "tiny.gguf", quantized), tmp_path))


def test_tensor_table_agrees_with_gguf_py(tmp_path):
    from gguf import GGUFReader

    path = write_tiny_gguf(tmp_path / "tiny.gguf", quantized=True)
    architecture, entries = tensor_table(path)
    reader = GGUFReader(path)
    assert architecture == "llama"
    assert [(e.name, e.qtype, e.start, e.nbytes) for e in entries] == [
        (t.name, int(t.tensor_type), int(t.data_offset), int(t.n_bytes)) for t in reader.tensors]
    assert [e.shape for e in entries] == [tuple(int(d) for d in reversed(t.shape)) for t in reader.tensors]


def test_a_declined_conversion_falls_back_to_transformers_without_leftovers(tmp_path, monkeypatch):
    path = write_tiny_gguf(tmp_path / "tiny.gguf", quantized=True)
    reference = tmp_path / "reference"
    reference.mkdir()
    sources._reference_dequantize(path, reference)

    def half_then_decline(gguf_file, folder):
        (folder / "stray.bin").write_bytes(b"half-written")
        (folder / "stray").mkdir()
        (folder / "stray" / "part.bin").write_bytes(b"half-written")
        raise Unsupported("declined in a test")

    monkeypatch.setenv("LSLLM_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("lsllm.model.gguf_convert.convert_gguf", half_then_decline)
    folder = Path(sources.resolve_source(str(path)))
    (folder / "lsllm_source.json").unlink()  # the cache's own record, not a conversion output
    assert_same_folders(folder, reference)


@pytest.mark.slow
@pytest.mark.parametrize("alias", ["smollm2-135m", "gemma3-270m"])
def test_real_gguf_models_convert_to_the_bytes_transformers_writes(alias, tmp_path):
    if not sources.alias_installed(alias):
        pytest.skip(f"{alias} is not installed")
    folder = Path(sources.resolve_source(alias))
    import json

    gguf_file = Path(json.loads((folder / "lsllm_source.json").read_text())["gguf"])
    assert_same_folders(*convert_both(gguf_file, tmp_path))
