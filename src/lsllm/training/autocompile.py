"""`--compile` left unset: compile the transformer blocks when the rest of the run is long enough to repay it.

Compiled blocks run a training step faster, but compiling costs a fixed time first (benchmarks/RESULTS.md,
section 2g), so it pays on long runs only and a short run would lose by it. The loop times its first eager steps
on the real batches (what a step costs depends on the model, the batches and the machine), then compiles when
the eager time still ahead, times the share compiling saves, beats the compile's cost. `--compile` compiles
from the start; `--no-compile` never does.
"""
from __future__ import annotations

import warnings

PROBE_STEPS = 5
"""Eager steps timed before deciding, after the first (which warms up allocators and caches)."""
SAVING = 0.1
"""The share of an eager step's time compiled blocks save: measured 0.06 (SST-2) and 0.21 (CoNLL-2003) on a
float32 CPU at the default batches, 0.24-0.29 at batch 8 under bf16 autocast (RESULTS.md sections 2 and 2g)."""
COST_SECONDS = 190.0
"""What compiling costs: the slowest measured, SmolLM2-135M with a cold inductor cache on 2 CPU cores (189 s;
92 s for the next workload, 10-35 s with a warm cache). With SAVING, a run compiles when more than ~32 minutes
of eager training are left."""


MIN_STEPS_LEFT = 1000
"""Never fewer steps left than this: the compile's cost is ~170 eager SmolLM2 steps here, so at SAVING it needs
over 1,700 to pay back (820 at the best measured saving). Step times measured on a busy machine are inflated while
COST_SECONDS is not: a 377-step run beside a CI run timed 20 s steps and compiled, for 14 minutes."""


def worth_compiling(step_seconds: float, steps_left: int) -> bool:
    """Whether compiling now saves more training time than it costs."""
    return steps_left >= MIN_STEPS_LEFT and steps_left * step_seconds * SAVING > COST_SECONDS


class AutoCompile:
    """Times eager steps and makes the decision once. `setting` is the run's `train.compile`: None (auto),
    True (compiled from the start by the method) or False."""

    def __init__(self, setting: bool | None, method):
        self.pending = setting is None and hasattr(method, "compile")
        self.chosen = False
        """True once this loop compiled (not --compile): a failing compile then falls back to eager."""
        self.first_step = False
        """True until the first step after the loop compiled has run (where compiling happens)."""
        self._times: list[float] = []

    def observe(self, seconds: float, steps_left: int) -> bool | None:
        """Record one eager step; once PROBE_STEPS are timed, the decision (then None ever after)."""
        if not self.pending:
            return None
        self._times.append(seconds)
        if len(self._times) <= PROBE_STEPS:  # the first is a warm-up and not counted
            return None
        self.pending = False
        return worth_compiling(self.step_seconds(), steps_left)

    def may_fall_back(self, err: BaseException) -> bool:
        """Whether a step's error is this loop's own compile failing: any error of the first compiled step (the
        compile happens there), or a torch.compile error later (a recompile); then never again."""
        compile_error = type(err).__module__.startswith(("torch._dynamo", "torch._inductor"))
        fall_back = self.chosen and (self.first_step or compile_error)
        if fall_back:
            self.chosen = self.first_step = False
        return fall_back

    def step_seconds(self) -> float:
        """Mean of the timed eager steps, the warm-up left out."""
        return sum(self._times[1:]) / max(1, len(self._times) - 1)


def fall_back_to_eager(model, err: BaseException) -> None:
    """A compile that failed (no C compiler, an unsupported operation) costs the run nothing but time: the
    blocks run eagerly again."""
    from lsllm.model.build import uncompile
    from lsllm.model.sources import first_line

    uncompile(model)
    warnings.warn(f"torch.compile failed ({type(err).__name__}: {first_line(err)}); training goes on without it "
                  "(pass --no-compile to skip the attempt)", RuntimeWarning, stacklevel=2)
