"""Model cards: the README.md that every run's `model/` and every export carries.

Hugging Face card metadata (YAML front matter: base_model, library_name, pipeline_tag, tags, license where
known, model-index with the run's validation/test metrics) and a body a reader of the folder needs: what the
model does, its labels, attention and pooling, the training data and command, the metrics with a per-class
table, intended use and limits, and how to load it. Everything comes from the folder's `lsllm.json` and, when
the folder sits in a run, the run's `metrics.json` and `config.yaml`, so the card's numbers are metrics.json's.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from lsllm.files import write_text_atomic
from lsllm.model.spec import ModelSpec

CARD = "README.md"
PIPELINE = {"seq": "text-classification", "token": "token-classification"}
TASK_NAME = {"seq": "Text Classification", "token": "Token Classification"}
HUB = {  # what each alias's package holds: the hub model it was converted from, and its licence
    "smollm2-135m": ("HuggingFaceTB/SmolLM2-135M-Instruct", "apache-2.0"),
    "minilm-l6": ("sentence-transformers/all-MiniLM-L6-v2", "apache-2.0"),
    "gemma3-270m": ("google/gemma-3-270m", "gemma"),
}
METRIC_NAME = {"accuracy": "accuracy", "macro_f1": "macro F1", "f1": "entity F1 (micro)",
               "precision": "entity precision", "recall": "entity recall", "loss": "loss"}


def write_model_card(folder: str | Path, run_dir: str | Path | None = None, auto_class: str | None = None) -> Path:
    """Write `folder/README.md` for the model in `folder`. `run_dir`: the run it was trained in (default: the
    folder's parent when that holds metrics.json). `auto_class`: the transformers class a merged export loads
    with (None: loads with lsllm)."""
    folder = Path(folder)
    spec = ModelSpec.load(folder)
    run = Path(run_dir) if run_dir is not None else folder.parent
    metrics = read_json_or_none(run / "metrics.json")
    config_path = run / "config.yaml"
    config_text = config_path.read_text(encoding="utf-8") if metrics and config_path.is_file() else None
    config = yaml.safe_load(config_text) if config_text else {}
    name = run.name.removesuffix(".incomplete") if metrics else folder.name  # cards are written before the rename
    card = "---\n" + yaml.safe_dump(card_metadata(spec, metrics, config, name, auto_class), sort_keys=False,
                                    allow_unicode=True) + "---\n\n" + _body(spec, metrics, config, config_text,
                                                                          name, auto_class)
    path = folder / CARD
    write_text_atomic(path, card)
    return path


def base_model_id(spec: ModelSpec) -> tuple[str | None, str | None]:
    """(hub id, licence) of the base model where known: an alias's source, or a hub id given as the model."""
    return hub_source(spec.base_model)


def hub_source(base_model: str) -> tuple[str | None, str | None]:
    if base_model in HUB:
        return HUB[base_model]
    from lsllm.model.sources import is_hub_id

    looks_local = base_model.startswith(("/", ".", "~")) or base_model.endswith(".gguf")
    return (base_model if not looks_local and is_hub_id(base_model) else None), None


def card_metadata(spec: ModelSpec, metrics: dict | None, config: dict, name: str, auto_class: str | None) -> dict:
    hub_id, licence = base_model_id(spec)
    tags = ["lsllm", "label-supervised", PIPELINE[spec.task]]
    tags.append("encoder-baseline" if spec.encoder else "ls-unllm" if spec.bidirectional else "ls-llm")
    if spec.lora:
        tags.append("lora")
    if spec.quantize != "none":
        tags += ["qlora", "bitsandbytes", spec.quantize.replace("bit", "-bit")]
    if spec.format == "onnx":
        tags.append("onnx")
    meta: dict = {}
    if hub_id:
        meta["base_model"] = hub_id
    meta["library_name"] = "transformers" if auto_class else "peft" if spec.lora and not spec.merged else "lsllm"
    meta["pipeline_tag"] = PIPELINE[spec.task]
    meta["tags"] = tags
    if licence:
        meta["license"] = licence
    return meta | model_index(metrics, config, spec.task, name)


def model_index(metrics: dict | None, config: dict, task: str, name: str) -> dict:
    """{"model-index": ...} with every validation and test score of metrics.json ({} without any)."""
    results = []
    for split in ("validation", "test"):
        scores = (metrics or {}).get(split)
        if not isinstance(scores, dict):
            continue
        data = (config.get("data") or {}).get(split) or split
        results.append({
            "task": {"type": PIPELINE[task], "name": TASK_NAME[task]},
            "dataset": {"name": Path(str(data)).name, "type": Path(str(data)).name, "split": split},
            "metrics": [{"type": key, "value": value, "name": f"{split} {METRIC_NAME.get(key, key)}"}
                        for key, value in scores.items()
                        if _is_metric(key, value)],
        })
    return {"model-index": [{"name": name, "results": results}]} if results else {}


def _body(spec: ModelSpec, metrics: dict | None, config: dict, config_text: str | None, name: str,
          auto_class: str | None) -> str:
    hub_id, licence = base_model_id(spec)
    base = hub_id or spec.base_model
    kind = "sequence classifier" if spec.task == "seq" else "token tagger (one label per word)"
    if spec.encoder:
        method = "an encoder fine-tuned as the paper's baseline"
    elif spec.bidirectional:
        method = "LS-unLLM: label-supervised fine-tuning with the causal mask removed (every token sees every other)"
    else:
        method = "LS-LLM: label-supervised fine-tuning of a causal decoder"
    out = [f"# {name}\n",
           f"A {kind} fine-tuned from `{base}` with lsllm ({method}; "
           "Li et al. 2023, *Label Supervised LLaMA Finetuning*). It predicts one of "
           f"{spec.num_labels} labels " + ("for each text." if spec.task == "seq" else "for each word.") + "\n",
           "## Labels\n", ", ".join(f"`{label}`" for label in spec.labels) + "\n", "## Model\n"]
    rows = [("base model", f"`{spec.base_model}`" + (f" (`{hub_id}`)" if hub_id and hub_id != spec.base_model else "")),
            ("attention", "bidirectional (LS-un)" if spec.bidirectional else "causal (LS)")]
    if spec.task == "seq":
        rows.append(("pooling", f"{spec.pooling} over {spec.pool_over}"))
    rows.append(("max length", f"{spec.max_length} tokens"))
    if spec.lora:
        lora = spec.lora
        rows.append(("adaptation", f"LoRA r={lora.get('r')}, alpha={lora.get('alpha')} on "
                                   f"{', '.join(lora.get('targets') or [])}" + (", merged" if spec.merged else "")))
    else:
        rows.append(("adaptation", "merged LoRA" if spec.merged else "full fine-tuning"))
    trained_quantized = (config.get("model") or {}).get("quantize") or "none"
    if spec.quantize != "none":
        rows.append(("base weights", f"{spec.quantize} (bitsandbytes, QLoRA); loading quantizes the base again, "
                                     "exactly as in training (needs bitsandbytes)"))
    elif spec.merged and trained_quantized != "none":
        rows.append(("base weights", f"float32: the {trained_quantized} base training used, dequantized, with LoRA "
                                     "merged in"))
    rows.append(("lsllm version", spec.lsllm_version or "unknown"))
    out.append(md_table(["", ""], rows))
    if metrics:
        out += training_section(metrics, config, config_text)
        out += results_section(metrics, spec.task)
    out += ["## Intended use and limits\n",
            f"For texts like those it was trained on ({'the training file above' if metrics else 'see the run'}), "
            f"to choose among its fixed labels; it cannot predict a label it was not trained with. "
            + ("Texts longer than the maximum length are truncated. " if spec.task == "seq" else
               "Longer sentences are split into overlapping windows, so every word gets a label. ")
            + "Its scores are only as good as the validation numbers above on data like the validation split: "
            "measure it on your own data before relying on it in another domain or language. The base model's "
            "licence and limits apply" + (f" ({licence})." if licence else ".") + "\n"]
    out += _loading(spec, auto_class)
    return "\n".join(out)


def training_section(metrics: dict, config: dict, config_text: str | None) -> list[str]:
    data = config.get("data") or {}
    rows = [("training data", f"`{data.get('train')}` ({metrics.get('train_examples')} examples)")]
    for split in ("validation", "test"):
        if data.get(split):
            n = (metrics.get(split) or {}).get("n")
            rows.append((f"{split} data", f"`{data.get(split)}`" + (f" ({n} examples)" if n is not None else "")))
    rows += [("steps", f"{metrics.get('steps')} (best on validation: step {metrics.get('best_step')})"),
             ("training tokens", str(metrics.get("train_tokens"))),
             ("training time", f"{metrics.get('train_time_s')} s on {metrics.get('device', 'unknown device')}")]
    out = ["## Training\n", md_table(["", ""], rows)]
    if config_text:
        out += ["Reproduce with `lsllm train --config config.yaml`, where config.yaml is the run's:\n",
                "```yaml\n" + config_text.rstrip() + "\n```\n"]
    return out


def results_section(metrics: dict, task: str) -> list[str]:
    out = ["## Results\n"]
    for split in ("validation", "test"):
        scores = metrics.get(split)
        if not isinstance(scores, dict):
            continue
        headline = [(METRIC_NAME.get(k, k), _num(v)) for k, v in scores.items() if _is_metric(k, v)]
        out += [f"**{split}** ({scores.get('n')} examples{', the checkpoint chosen on it' if split == 'validation' else ''})\n",
                md_table(["metric", "value"], headline)]
        per = scores.get("per_class" if task == "seq" else "per_type") or {}
        if per:
            out.append(md_table([("label" if task == "seq" else "entity type"), "precision", "recall", "F1",
                               "support"],
                              [(f"`{k}`", _num(r["precision"]), _num(r["recall"]), _num(r["f1"]), str(r["support"]))
                               for k, r in per.items()]))
    return out


def _loading(spec: ModelSpec, auto_class: str | None) -> list[str]:
    if spec.format == "onnx":
        return _onnx_loading(spec)
    out = ["## How to load\n", "With lsllm installed (FOLDER is this folder):\n",
           "```bash\nlsllm predict FOLDER --input texts.csv --output predictions.jsonl\n```\n",
           "```python\nfrom lsllm import Predictor\n\nPredictor(\"FOLDER\").predict([\"some text\"])\n```\n"]
    if auto_class:
        out += [f"With transformers alone (the LoRA weights are merged and the head is transformers' own):\n",
                f"```python\nfrom transformers import {auto_class}, AutoTokenizer\n\n"
                f"model = {auto_class}.from_pretrained(\"FOLDER\")\n"
                "tokenizer = AutoTokenizer.from_pretrained(\"FOLDER\")\n```\n"]
    elif spec.lora and not spec.merged:
        base = base_model_id(spec)[0] or "BASE"
        out += ["The LoRA adapter alone (without the classification head in `head.safetensors`) loads with PEFT:\n",
                f"```python\nfrom peft import PeftModel\nfrom transformers import AutoModel\n\n"
                f"model = PeftModel.from_pretrained(AutoModel.from_pretrained(\"{base}\"), \"FOLDER/adapter\")\n```\n"]
        if spec.base_model in HUB and spec.base_model != "minilm-l6":
            out.append(f"The adapter was trained on lsllm's `{spec.base_model}`, a dequantized GGUF of `{base}`: "
                       "the hub's own weights differ slightly, so only lsllm reproduces the trained outputs "
                       "exactly.\n")
    return out


def _onnx_loading(spec: ModelSpec) -> list[str]:
    output = "(B, C)" if spec.task == "seq" else "(B, T, C), one row of scores per token"
    return ["## How to run\n",
            "This folder is an ONNX export (`model.onnx`: the LoRA-merged model with its attention mask, pooling "
            "and head inside; int8 weights if exported with `--int8`, see `export.json`). lsllm runs it with "
            "onnxruntime on the CPU, no PyTorch weights needed (`pip install 'lsllm[onnx]'`):\n",
            "```bash\nlsllm predict FOLDER --input texts.csv --output predictions.jsonl\nlsllm serve FOLDER\n```\n",
            "```python\nfrom lsllm import Predictor\n\nPredictor(\"FOLDER\").predict([\"some text\"])\n```\n",
            "With onnxruntime alone: inputs `input_ids` and `attention_mask` (int64, (B, T), from this folder's "
            f"tokenizer, right padding, at most {spec.max_length} tokens), output `logits` {output}:\n",
            "```python\nimport onnxruntime as ort\nfrom transformers import AutoTokenizer\n\n"
            "tokenizer = AutoTokenizer.from_pretrained(\"FOLDER\")\n"
            "session = ort.InferenceSession(\"FOLDER/model.onnx\", providers=[\"CPUExecutionProvider\"])\n"
            "batch = tokenizer([\"some text\"], return_tensors=\"np\", padding=True)\n"
            "logits = session.run([\"logits\"], {\"input_ids\": batch[\"input_ids\"], "
            "\"attention_mask\": batch[\"attention_mask\"]})[0]\n```\n"]


def _is_metric(key: str, value) -> bool:
    """A score of metrics.json (not a count: n, n_tokens)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and key != "n" and not key.startswith("n_")


def md_table(header: list[str], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _num(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def read_json_or_none(path: Path) -> dict | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None
