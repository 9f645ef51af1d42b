"""`train.compile` unset: the loop times its first eager steps and compiles the transformer blocks only when the
rest of the run repays the compile; a compile it chose that fails costs nothing but the attempt."""
import json
from pathlib import Path

import pytest
import torch

from lsllm.config import RunConfig
from lsllm.training import autocompile
from lsllm.training.autocompile import PROBE_STEPS, AutoCompile, worth_compiling
from lsllm.training.loop import train
from lsllm.training.ls import LSMethod
from tests.test_workflow import write_seq_csv


@pytest.fixture
def data(tmp_path):
    return write_seq_csv(tmp_path / "train.csv", 64, 0), write_seq_csv(tmp_path / "dev.csv", 16, 1)


def config(tiny_models, data, out, compile=None):
    c = RunConfig()
    c.data.train, c.data.validation = str(data[0]), str(data[1])
    c.model.model, c.model.task = str(tiny_models["llama"]), "seq"
    c.model.dropout, c.model.lora_dropout = 0.0, 0.0  # compiled and eager dropout draw different masks
    c.train.max_steps, c.train.eval_every, c.train.log_every, c.train.lr = 12, 4, 1, 3e-3
    c.train.precision, c.train.batch_size, c.train.compile = "fp32", 8, compile
    c.output = str(out)
    return c


def log_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def losses(log: list[dict]) -> list[float]:
    return [r["loss"] for r in log if r["type"] in ("train", "eval")]


def compiled_blocks(model) -> int:
    return sum(m._compiled_call_impl is not None for m in model.modules())


def test_the_decision_weighs_the_eager_time_left_against_the_compile():
    assert not worth_compiling(step_seconds=1.1, steps_left=100)  # a 2,000-example SmolLM2 run: 11 s saved
    assert not worth_compiling(step_seconds=1.1, steps_left=1_100)  # one whole-CoNLL epoch: 2 min saved, 3 spent
    assert worth_compiling(step_seconds=1.1, steps_left=3_300)  # three epochs of it
    assert worth_compiling(0.1, 100_000) and not worth_compiling(0.1, 10_000)
    assert not worth_compiling(step_seconds=20.0, steps_left=377)  # slow steps (a busy machine), few of them


def test_the_first_step_is_a_warm_up_and_the_decision_comes_once():
    class Method:
        def compile(self):
            pass

    auto = AutoCompile(None, Method())
    answers = [auto.observe(seconds, steps_left=2000) for seconds in [30.0] + [1.0] * PROBE_STEPS + [1.0, 1.0]]
    assert answers == [None] * PROBE_STEPS + [True, None, None]
    assert auto.step_seconds() == pytest.approx(1.0)  # the 30 s warm-up step is not counted
    assert all(AutoCompile(setting, Method()).observe(1.0, 10**6) is None for setting in (True, False))
    assert AutoCompile(None, object()).observe(1.0, 10**6) is None  # a method that can't compile (prompting)


def test_unset_compile_stays_eager_on_a_short_run_and_says_why(tiny_models, data, tmp_path):
    result = train(config(tiny_models, data, tmp_path / "run"), progress=False, keep_model=True)
    records = [r for r in log_of(tmp_path / "run") if r["type"] == "compile"]
    assert len(records) == 1 and records[0]["step"] == PROBE_STEPS + 1 and records[0]["compiled"] is False
    assert records[0]["eager_step_seconds"] > 0
    assert compiled_blocks(result.model) == 0


def test_unset_compile_compiles_when_the_run_repays_it_and_trains_the_same(tiny_models, data, tmp_path, monkeypatch):
    eager = train(config(tiny_models, data, tmp_path / "eager", compile=False), progress=False)
    assert not any(r["type"] == "compile" for r in log_of(eager.run_dir))  # --no-compile: no decision to make
    monkeypatch.setattr(autocompile, "COST_SECONDS", 0.0)  # any run repays a free compile
    monkeypatch.setattr(autocompile, "MIN_STEPS_LEFT", 0)
    auto = train(config(tiny_models, data, tmp_path / "auto"), progress=False, keep_model=True)
    record = next(r for r in log_of(auto.run_dir) if r["type"] == "compile")
    assert record["step"] == PROBE_STEPS + 1 and record["compiled"] is True
    assert compiled_blocks(auto.model) == 2  # the tiny Llama's two blocks
    assert losses(log_of(auto.run_dir)) == pytest.approx(losses(log_of(eager.run_dir)), rel=1e-3)
    torch._dynamo.reset()


def test_a_failing_automatic_compile_falls_back_to_eager(tiny_models, data, tmp_path, monkeypatch):
    """No C compiler, an operation inductor can't lower: the run warns and goes on eagerly, losing only the try."""
    eager = train(config(tiny_models, data, tmp_path / "eager", compile=False), progress=False)
    monkeypatch.setattr(autocompile, "COST_SECONDS", 0.0)
    monkeypatch.setattr(autocompile, "MIN_STEPS_LEFT", 0)

    def broken_compile(self):
        def fail(*args, **kwargs):
            raise RuntimeError("InductorError: C compiler not found")

        block = next(m for m in self.model.modules() if type(m).__name__.endswith("DecoderLayer"))
        block._compiled_call_impl = fail

    monkeypatch.setattr(LSMethod, "compile", broken_compile)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*C compiler not found"):
        auto = train(config(tiny_models, data, tmp_path / "auto"), progress=False, keep_model=True)
    assert compiled_blocks(auto.model) == 0
    assert losses(log_of(auto.run_dir)) == losses(log_of(eager.run_dir))  # the retried step ran eagerly
