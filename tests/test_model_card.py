"""Every run's model/ and every export carries a model card whose metadata parses and whose numbers are the run's."""
import json

import pytest
import yaml

from lsllm.cli import main
from lsllm.model.card import write_model_card
from lsllm.model.spec import ModelSpec
from test_workflow import seq_data  # noqa: F401  (fixture)


def read_card(folder):
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert text.startswith("---\n")
    front, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(front), body


def index_metrics(meta, split):
    [entry] = meta["model-index"]
    [result] = [r for r in entry["results"] if r["dataset"]["split"] == split]
    return {m["type"]: m["value"] for m in result["metrics"]}, result


@pytest.mark.parametrize("task", ["seq", "token"])
def test_run_model_card_metadata_and_numbers_equal_metrics_json(tiny_runs, task):
    run = tiny_runs[task]
    metrics = json.loads((run / "metrics.json").read_text())
    meta, body = read_card(run / "model")
    assert meta["pipeline_tag"] == ("text-classification" if task == "seq" else "token-classification")
    assert meta["library_name"] == "peft" and "lsllm" in meta["tags"] and "lora" in meta["tags"]
    assert "base_model" not in meta  # a local folder is not a hub id: the card must not invent one
    for split in ("validation", "test"):
        values, result = index_metrics(meta, split)
        expected = {k: v for k, v in metrics[split].items() if isinstance(v, (int, float)) and k not in ("n", "n_tokens")}
        assert values == expected
        assert result["task"]["type"] == meta["pipeline_tag"]
    main_metric = metrics["main_metric"]
    assert f"{metrics['validation'][main_metric]:.4f}" in body
    per = metrics["validation"]["per_class" if task == "seq" else "per_type"]
    for name, row in per.items():
        assert f"| `{name}` | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {row['support']} |" in body
    spec = ModelSpec.load(run / "model")
    assert all(f"`{label}`" in body for label in spec.labels)
    assert (run / "config.yaml").read_text().strip() in body  # the command that reproduces it
    assert f"({metrics['train_examples']} examples)" in body


def test_alias_base_model_gets_its_hub_id_and_licence(tmp_path):
    ModelSpec(task="seq", labels=["a", "b"], base_model="smollm2-135m", bidirectional=False, pooling="last",
              lora={"r": 12, "alpha": 32, "targets": ["q_proj", "v_proj"]}).save(tmp_path)
    write_model_card(tmp_path)
    meta, body = read_card(tmp_path)
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and meta["license"] == "apache-2.0"
    assert "ls-llm" in meta["tags"] and "model-index" not in meta  # no run around it: no numbers to claim
    assert "causal (LS)" in body and "last over hidden" in body


def test_exports_carry_the_card_merged_ones_say_how_transformers_loads_them(tiny_runs, tmp_path):
    run = tiny_runs["seq"]
    assert main(["export", str(run), "--output", str(tmp_path / "copy")]) == 0
    assert (tmp_path / "copy" / "README.md").read_text() == (run / "model" / "README.md").read_text()
    assert main(["export", str(run), "--output", str(tmp_path / "merged"), "--merge"]) == 0
    meta, body = read_card(tmp_path / "merged")
    assert meta["library_name"] == "transformers"
    assert "AutoModelForSequenceClassification.from_pretrained" in body
    assert index_metrics(meta, "validation")[0] == index_metrics(read_card(run / "model")[0], "validation")[0]


class FakeHub:
    """Stands in for huggingface_hub.HfApi (no hub is reachable here): records what would be uploaded."""
    calls = []

    def __init__(self, token=None):
        self.token = token

    def create_repo(self, repo_id, repo_type, private, exist_ok):
        FakeHub.calls.append(("create", repo_id, repo_type, private, exist_ok))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
        from pathlib import Path
        FakeHub.calls.append(("upload", repo_id, sorted(p.name for p in Path(folder_path).iterdir()), commit_message))


def test_push_to_hub_uploads_the_export_with_its_card(tiny_runs, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    FakeHub.calls = []
    out = tmp_path / "merged"
    assert main(["export", str(tiny_runs["seq"]), "--output", str(out), "--merge", "--push-to-hub", "me/tweets",
                 "--private"]) == 0
    assert "uploaded to https://huggingface.co/me/tweets" in capsys.readouterr().out
    create, upload = FakeHub.calls
    assert create == ("create", "me/tweets", "model", True, True)
    assert upload[1] == "me/tweets" and {"README.md", "config.json", "lsllm.json", "tokenizer.json"} <= set(upload[2])


def test_a_failed_upload_is_one_clear_error_and_keeps_the_export(tiny_runs, tmp_path, monkeypatch, capsys):
    """A real upload attempt to a hub endpoint that refuses connections (nothing listens on port 9)."""
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("HF_TOKEN", "hf_fake")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    out = tmp_path / "copy"
    code = main(["export", str(tiny_runs["seq"]), "--output", str(out), "--push-to-hub", "me/tweets"])
    err = capsys.readouterr().err
    assert code == 2 and "could not upload" in err and "me/tweets" in err and "Traceback" not in err
    assert (out / "README.md").is_file() and (out / "lsllm.json").is_file()


def test_instruct_runs_carry_a_card_with_their_prompt_and_numbers(tiny_models, seq_data, tmp_path):
    from lsllm.training.loop import train
    from test_workflow import _instruct_config

    run = tmp_path / "instruct"
    train(_instruct_config(tiny_models["llama"], seq_data, run), progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    meta, body = read_card(run / "model")
    assert (run / "model" / "adapter" / "README.md").read_text() == (run / "model" / "README.md").read_text()
    assert meta["library_name"] == "peft" and "instruction-tuning" in meta["tags"] and "base_model" not in meta
    for split in ("validation", "test"):
        values, _ = index_metrics(meta, split)
        assert values == {k: v for k, v in metrics[split].items() if isinstance(v, (int, float))
                          and k not in ("n", "n_tokens")}
    prompt = json.loads((run / "prompt.json").read_text())
    assert prompt["prompt"]["template"].rstrip() in body and all(f"`{label}`" in body for label in prompt["labels"])
    adapter = json.loads((run / "model" / "adapter" / "adapter_config.json").read_text())
    assert f"LoRA r={adapter['r']}, alpha={adapter['lora_alpha']}" in body
    assert (run / "config.yaml").read_text().strip() in body
