"""Prompting baselines from the LS-LLaMA paper: zero-shot, few-shot (in-context) and instruction tuning.

A prompt is a template filled with the article (or sentence) and the label names. A causal LM then
either *scores* every label as a continuation of the prompt (the label with the highest likelihood
wins) or *generates* freely and the output is matched against the labels. Token tagging (NER) always
generates: the model lists "type: span; type: span" and the spans are mapped back onto the words.

    config.py        PromptConfig: template, label names, chat wrapping, shots, length budget
    templates.py     label names as shown, few-shot selection, answers, prompts cut to fit
    tokens.py        prompt tokenisation shared by scoring, generation and instruction features
    scoring.py       label log-likelihoods over a shared KV cache
    generation.py    greedy generation and label matching
    entities.py      NER answers parsed and mapped back onto words
    predict.py       predict_zero_shot: prompts in, one Evaluation out
    instruct_data.py instruction-tuning features (loss on the answer only)
    run.py           zero-/few-shot as a method of the training loop (trains nothing)
    instruct.py      instruction tuning as a method of the training loop
    predictor.py     prompt.json and PromptPredictor: a prompting run folder predicts on its own
"""
from lsllm.prompting.config import DEFAULT_TEMPLATE, NER_TEMPLATE, PromptConfig, load_prompt_config, parse_label_names
from lsllm.prompting.entities import entities_to_tags, parse_entities
from lsllm.prompting.generation import generate_labels, generate_texts, match_label
from lsllm.prompting.instruct_data import collate_instruct, instruct_features
from lsllm.prompting.predict import INVALID, few_shot_examples, predict_zero_shot
from lsllm.prompting.scoring import label_log_likelihoods, score_labels
from lsllm.prompting.templates import build_answers, build_prompts, format_entities, select_shots, shown_labels, shown_types
from lsllm.prompting.tokens import continuation_ids

__all__ = ["DEFAULT_TEMPLATE", "NER_TEMPLATE", "INVALID", "PromptConfig", "load_prompt_config", "parse_label_names",
           "entities_to_tags", "parse_entities", "generate_labels", "generate_texts", "match_label",
           "collate_instruct", "instruct_features", "few_shot_examples", "predict_zero_shot",
           "label_log_likelihoods", "score_labels", "build_answers", "build_prompts", "format_entities",
           "select_shots", "shown_labels", "shown_types", "continuation_ids"]
