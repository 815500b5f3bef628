from __future__ import annotations

import pytest

from mlsearch_lib.config import paths
from mlsearch_lib.config.profiles import PROFILES_DIR, ProfileError, load_profile, parse_sets


@pytest.mark.parametrize("name", sorted(p.stem for p in PROFILES_DIR.glob("*.yaml")))
def test_every_shipped_profile_validates(name):
    assert load_profile(name).name == name


def test_gpu_profile_matches_the_seed_setup_but_the_epochs_the_budget_allows():
    gpu = load_profile("gpu")
    assert gpu.llm.model == "Qwen/Qwen2.5-14B-Instruct"
    assert (gpu.llm.lora_r, gpu.llm.lora_alpha, gpu.llm.lr, gpu.llm.scheduler) == (16, 16, 1e-4, "cosine")
    assert gpu.llm.epochs == 1 and gpu.llm.cutoff_len == 1024  # the seed ran 2 (reports/bench/gpu_budget.md)
    assert gpu.llm.batch_size * gpu.llm.grad_accum == 8
    assert gpu.validation.mode == "split" and gpu.budget.gpu_hours == 48


def test_unknown_key_is_rejected_with_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nencoder:\n  learning_rate: 0.1\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=r"bad.yaml: unknown key 'encoder.learning_rate'"):
        load_profile(bad)


def test_wrong_type_and_missing_profile(tmp_path):
    with pytest.raises(ProfileError, match=r"'seed'"):
        load_profile("tiny", {"seed": "abc"})
    with pytest.raises(ProfileError, match=r"no such profile \(known: .*cpu"):
        load_profile("nope")


def test_overrides_merge_nested():
    prof = load_profile("tiny", {"encoder": {"epochs": 3}})
    assert prof.encoder.epochs == 3 and prof.encoder.max_length == load_profile("tiny").encoder.max_length


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSEARCH_DATA_DIR", str(tmp_path))
    assert paths.data_dir() == tmp_path.resolve()
    monkeypatch.setenv("MLSEARCH_DATA_DIR", str(tmp_path / "missing"))
    with pytest.raises(paths.DataNotFound, match="MLSEARCH_DATA_DIR"):
        paths.data_dir()


def test_no_data_anywhere_says_where_to_put_files(tmp_path, monkeypatch):
    monkeypatch.delenv("MLSEARCH_DATA_DIR", raising=False)
    monkeypatch.setattr(paths, "PROJECT_ROOT", tmp_path / "proj")
    with pytest.raises(paths.DataNotFound, match="data/raw/QC/"):
        paths.data_dir()


def test_output_and_build_roots_follow_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSEARCH_OUTPUT_ROOT", str(tmp_path / "o"))
    monkeypatch.setenv("MLSEARCH_BUILD_DIR", str(tmp_path / "b"))
    assert paths.figures_dir() == (tmp_path / "o" / "figures").resolve()
    assert paths.tables_dir() == (tmp_path / "o" / "reports" / "tables").resolve()
    assert paths.build_dir() == (tmp_path / "b").resolve()


def test_set_overrides_are_nested_yaml_values():
    assert parse_sets(["llm.lr=2e-4", "data.max_rows.QC=100", "llm.target_modules=[q_proj, v_proj]",
                       "llm.max_train_rows=null"]) == {
        "llm": {"lr": 2e-4, "target_modules": ["q_proj", "v_proj"], "max_train_rows": None},
        "data": {"max_rows": {"QC": 100}}}
    with pytest.raises(ValueError, match="key=value"):
        parse_sets(["llm.lr"])


def test_per_task_overrides_change_one_task_only_and_bad_keys_name_the_task():
    profile = load_profile("tiny", {"per_task": {"QI": {"encoder": {"epochs": 3, "lr": 1e-3}}}})
    qi, qc = profile.for_task("QI"), profile.for_task("QC")
    assert (qi.encoder.epochs, qi.encoder.lr) == (3, 1e-3)
    assert qc.encoder == load_profile("tiny").encoder and qi.encoder.max_length == qc.encoder.max_length
    with pytest.raises(ProfileError, match=r"tiny.yaml: unknown key 'per_task.QI.encoder.epoch'"):
        load_profile("tiny", {"per_task": {"QI": {"encoder": {"epoch": 3}}}})


def test_an_explicit_override_beats_the_files_per_task_setting(tmp_path):
    """``--set encoder.lr=2e-4`` must reach QI too, though the file gives QI its own lr."""
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nencoder: {lr: 2.0e-4}\nper_task:\n  QI: {encoder: {lr: 1.0e-4, train_top_layers: 4}}\n")
    as_filed = load_profile(path).for_task("QI").encoder
    assert (as_filed.lr, as_filed.train_top_layers) == (1e-4, 4)
    overridden = load_profile(path, parse_sets(["encoder.lr=3e-4"]))
    assert overridden.for_task("QI").encoder.lr == 3e-4 and overridden.for_task("QI").encoder.train_top_layers == 4
    assert overridden.for_task("QC").encoder.lr == 3e-4
    per_task = load_profile(path, parse_sets(["per_task.QI.encoder.lr=5e-4"])).for_task("QI").encoder
    assert per_task.lr == 5e-4  # an override aimed at per_task itself still lands there


@pytest.mark.parametrize("native", [True, False])
def test_bf16_auto_becomes_what_the_hardware_computes(native, monkeypatch):
    from mlsearch_lib.config import hardware

    monkeypatch.setattr(hardware, "native_bf16", lambda device_type=None: native)
    cpu = load_profile("cpu", parse_sets(["llm.bf16=auto"]))
    # resolved when the profile loads: cache keys and saved models record the precision that ran
    assert cpu.encoder.bf16 is native and cpu.for_task("QI").encoder.bf16 is native and cpu.llm.bf16 is native
    assert load_profile("cpu", parse_sets(["encoder.bf16=true"])).encoder.bf16 is True  # explicit wins
    with pytest.raises(ProfileError, match=r"'encoder.bf16'"):
        load_profile("cpu", parse_sets(["encoder.bf16=fast"]))
