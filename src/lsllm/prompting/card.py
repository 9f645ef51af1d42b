"""The model card of an instruction-tuned run (`--method instruct`): the LS runs' card (lsllm.model.card) with
the prompt, answer mode and adapter in place of the head and pooling."""
from __future__ import annotations

from pathlib import Path

import yaml

from lsllm.files import write_text_atomic
from lsllm.model.card import (CARD, PIPELINE, hub_source, md_table, model_index, read_json_or_none,
                              results_section, training_section)
from lsllm.prompting.predictor import ADAPTER, read_prompt_info


def write_instruct_card(run: str | Path) -> Path:
    """The card of an instruction-tuned run (`--method instruct`): `model/README.md`, also written over PEFT's
    template card in `model/adapter/`, the folder one would upload as a PEFT adapter."""
    run = Path(run)
    info = read_prompt_info(run)
    metrics = read_json_or_none(run / "metrics.json")
    config_path = run / "config.yaml"
    config_text = config_path.read_text(encoding="utf-8") if metrics and config_path.is_file() else None
    config = yaml.safe_load(config_text) if config_text else {}
    name = run.name.removesuffix(".incomplete")
    hub_id, licence = hub_source(info["model"])
    task = info["task"]
    meta = ({"base_model": hub_id} if hub_id else {}) | {
        "library_name": "peft", "pipeline_tag": "text-generation",
        "tags": ["lsllm", "instruction-tuning", PIPELINE[task], "lora"]} | ({"license": licence} if licence else {})
    meta |= model_index(metrics, config, task, name)
    adapter = read_json_or_none(run / ADAPTER / "adapter_config.json") or {}
    prompt = info["prompt"]
    base = hub_id or info["model"]
    answer = ("the name of one label" if task == "seq" else "the entities of the text with their types, which "
              "lsllm maps back to one tag per word")
    out = [f"# {name}\n",
           f"A LoRA adapter on the causal LM `{base}`, instruction-tuned with lsllm: the paper's instruction-tuning "
           "baseline (Li et al. 2023, *Label Supervised LLaMA Finetuning*), trained on prompt -> answer text with "
           f"the loss on the answer only. Given the prompt below, the model answers with {answer}; lsllm "
           + ("scores every label's text and picks the most likely." if info["mode"] == "score" else
              "generates the answer and matches it to a label (unmatched answers count as invalid).") + "\n",
           "## Labels\n", ", ".join(f"`{label}`" for label in info["labels"]) + "\n", "## Model\n",
           md_table(["", ""], [
               ("base model", f"`{info['model']}`" + (f" (`{hub_id}`)" if hub_id and hub_id != info["model"] else "")),
               ("adaptation", f"LoRA r={adapter.get('r')}, alpha={adapter.get('lora_alpha')} on "
                              f"{', '.join(sorted(adapter.get('target_modules') or []))}"),
               ("answers", f"{info['mode']} (`--mode {info['mode']}`)"),
               ("prompt budget", f"{prompt.get('max_length')} tokens; chat template: {prompt.get('use_chat_template')}"),
           ]),
           "Prompt template (`{text}` is the input, `{labels}` the label names):\n",
           "```text\n" + str(prompt.get("template")).rstrip() + "\n```\n"]
    if metrics:
        out += training_section(metrics, config, config_text)
        out += results_section(metrics, task)
    out += ["## Intended use and limits\n",
            "A baseline to compare label-supervised fine-tuning with, on data like its training file. It answers "
            "only in the label set above; the prompt and the run's `prompt.json` are part of the model: other "
            "prompts give other answers. Measure it on your own data before relying on it. The base model's "
            "licence and limits apply" + (f" ({licence})." if licence else ".") + "\n",
            "## How to load\n",
            "With lsllm, from the run folder (RUN: `prompt.json` there holds the prompt, labels and answer mode):\n",
            "```bash\nlsllm predict RUN --input texts.csv --output predictions.jsonl\n```\n",
            "The adapter alone, with PEFT (prompt it with the template above):\n",
            "```python\nfrom peft import PeftModel\nfrom transformers import AutoModelForCausalLM\n\n"
            f"model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(\"{hub_id or 'BASE'}\"), "
            "\"RUN/model/adapter\")\n```\n"]
    card = "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n\n" + "\n".join(out)
    for folder in (run / "model", run / ADAPTER):
        write_text_atomic(folder / CARD, card)
    return run / "model" / CARD
