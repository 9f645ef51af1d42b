"""--resume refuses changed settings or data, allows extending the run and moved files."""
import json

import pytest

from lsllm.config import RunConfig
from lsllm.errors import RunFolderError
from lsllm.training.resume import RUN_INPUTS, check_resume, fingerprint_inputs, record_run_inputs


@pytest.fixture
def run(tmp_path):
    """An interrupted run's work folder, recorded with the config it returns."""
    (tmp_path / "train.csv").write_text("text,label\ngood,pos\nbad,neg\n")
    (tmp_path / "dev.csv").write_text("text,label\nfine,pos\n")
    config = RunConfig()
    config.data.train, config.data.validation = str(tmp_path / "train.csv"), str(tmp_path / "dev.csv")
    config.train.max_steps, config.train.lr = 100, 5e-4
    config.output = str(tmp_path / "run")
    work = tmp_path / "run.incomplete"
    work.mkdir()
    record_run_inputs(work, config)
    return work, config


def again(config: RunConfig) -> RunConfig:
    """The same settings, as a new command line would build them."""
    return RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))


def test_same_settings_pass(run):
    work, config = run
    assert check_resume(work, again(config)) == []


def test_record_holds_config_and_file_fingerprints(run):
    work, config = run
    saved = json.loads((work / RUN_INPUTS).read_text())
    assert saved["config"] == config.to_dict()
    train = saved["inputs"]["data.train"]
    assert train["path"] == config.data.train and train["size"] == 28 and len(train["sha256"]) == 64
    assert set(saved["inputs"]) == {"data.train", "data.validation"}  # no test file, no prompt file


def test_every_refused_change_is_listed(run, tmp_path):
    work, config = run
    changed = again(config)
    changed.train.lr, changed.train.seed, changed.model.model = 1e-3, 7, "other-model"
    (tmp_path / "train.csv").write_text("text,label\ngood,neg\nbad,pos\n")
    with pytest.raises(RunFolderError) as err:
        check_resume(work, changed)
    message = str(err.value)
    assert message.startswith(f"cannot resume {work}: settings differ from the interrupted run: ")
    for part in ("train.lr: 0.0005 -> 0.001", "train.seed: 0 -> 7", "model.model: smollm2-135m -> other-model",
                 "data.train: ", "train.csv changed since the run started (sha256 ",
                 "only train.compile, train.epochs, train.eval_batch_size, train.log_every, train.max_steps",
                 "another --output"):
        assert part in message
    assert "\n" not in message


@pytest.mark.parametrize("field,value", [("eval_every", 5), ("early_stopping", 2), ("precision", "fp32")])
def test_selection_and_numerics_settings_are_refused(run, field, value):
    work, config = run
    changed = again(config)
    setattr(changed.train, field, value)
    with pytest.raises(RunFolderError, match=f"train.{field}: "):
        check_resume(work, changed)


def test_default_lr_spelled_out_is_a_difference(run):
    # Compared as configs, not as resolved values: the message shows why (None -> 0.0005).
    work, config = run
    changed = again(config)
    changed.train.lr = None
    with pytest.raises(RunFolderError, match=r"train\.lr: 0\.0005 -> None"):
        check_resume(work, changed)


def test_adding_or_dropping_a_split_is_refused(run, tmp_path):
    work, config = run
    changed = again(config)
    changed.data.validation = None
    (tmp_path / "test.csv").write_text("text,label\nfun,pos\n")
    changed.data.test = str(tmp_path / "test.csv")
    with pytest.raises(RunFolderError, match=r"data\.validation: .*dev\.csv -> None; data\.test: None -> .*test\.csv"):
        check_resume(work, changed)


def test_extending_the_run_passes_and_is_reported(run):
    work, config = run
    changed = again(config)
    changed.train.max_steps, changed.train.eval_batch_size = 200, 8
    changed.output = "elsewhere/run"  # same folder spelled otherwise: not a setting
    assert check_resume(work, changed) == ["train.eval_batch_size: 32 -> 8", "train.max_steps: 100 -> 200"]


def test_moved_file_with_same_content_passes(run, tmp_path):
    work, config = run
    moved = tmp_path / "moved" / "renamed.csv"
    moved.parent.mkdir()
    (tmp_path / "train.csv").rename(moved)
    changed = again(config)
    changed.data.train = str(moved)
    assert check_resume(work, changed) == [f"data.train: {tmp_path / 'train.csv'} -> {moved} (same content)"]


def test_dataset_folder_is_hashed_by_content(tmp_path):
    folder = tmp_path / "ds"
    (folder / "sub").mkdir(parents=True)
    (folder / "data-00000.arrow").write_bytes(b"abc")
    (folder / "sub" / "state.json").write_text("{}")
    config = RunConfig()
    config.data.train = str(folder)
    first = fingerprint_inputs(config)["data.train"]
    assert first["size"] == 5
    copy = tmp_path / "copy"
    (copy / "sub").mkdir(parents=True)
    (copy / "data-00000.arrow").write_bytes(b"abc")
    (copy / "sub" / "state.json").write_text("{}")
    config.data.train = str(copy)
    assert fingerprint_inputs(config)["data.train"]["sha256"] == first["sha256"]
    (copy / "sub" / "state.json").rename(copy / "state.json")  # same bytes, other layout
    assert fingerprint_inputs(config)["data.train"]["sha256"] != first["sha256"]


def test_older_run_without_record_falls_back_to_config_yaml(run):
    work, config = run
    (work / RUN_INPUTS).unlink()
    (work / "config.yaml").write_text(config.to_yaml())
    assert check_resume(work, again(config)) == []
    changed = again(config)
    changed.train.lr = 1e-3
    with pytest.raises(RunFolderError, match=r"train\.lr: 0\.0005 -> 0\.001"):
        check_resume(work, changed)


@pytest.mark.parametrize("content", ["{broken", '{"inputs": {}, "config": {"train": {"nope": 1}}}', "[]"])
def test_unreadable_record_is_refused(run, content):
    work, config = run
    (work / RUN_INPUTS).write_text(content)
    with pytest.raises(RunFolderError, match="can't read the interrupted run's settings"):
        check_resume(work, again(config))


def test_no_record_at_all_is_refused(run):
    work, config = run
    (work / RUN_INPUTS).unlink()
    with pytest.raises(RunFolderError, match="settings are unknown"):
        check_resume(work, again(config))
