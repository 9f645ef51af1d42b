"""lsllm: label-supervised fine-tuning of decoder LLMs as classifiers and taggers (LS-LLaMA / LS-unLLaMA)."""
__version__ = "0.1.0"
