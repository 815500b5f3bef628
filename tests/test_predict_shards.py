"""predict at scale: streamed shards that a killed run resumes without redoing, workers that
share them (in-process, as a SLURM array would, and through Ray), a bad line named first."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlsearch_lib.__main__ import main
from mlsearch_lib.data.records import DataFormatError
from mlsearch_lib.evaluation import predict

ROWS = 43  # shards of 10 rows: four whole ones and a last of 3
LOAD = predict.load_for_task


@pytest.fixture()
def setup(tmp_path, synthetic_data, qc_model):
    directory, _ = qc_model
    src = tmp_path / "in.jsonl"
    lines = (synthetic_data / "QC" / "train_QC.txt").read_text(encoding="utf-8").splitlines()[:ROWS]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    reference = tmp_path / "one.jsonl"
    predict.predict_shards("QC", directory, src, reference, trust=True, shard_rows=1000)  # one shard
    return directory, src, reference.read_bytes()


class _Counting:
    """The loaded model, counting the shards it scores and failing at call ``fail_at``."""

    def __init__(self, model, fail_at: int | None = None):
        self.model, self.fail_at, self.calls = model, fail_at, 0

    def predict_proba(self, df):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("killed")
        return self.model.predict_proba(df)


def _wrap(monkeypatch, fail_at=None) -> list[_Counting]:
    made: list[_Counting] = []
    monkeypatch.setattr(predict, "load_for_task", lambda *a: made.append(_Counting(LOAD(*a), fail_at)) or made[-1])
    return made


def test_a_killed_run_loses_nothing_and_redoes_nothing(setup, tmp_path, monkeypatch):
    model_dir, src, reference = setup
    out = tmp_path / "pred.jsonl"
    shards = predict.shards_dir(out)
    _wrap(monkeypatch, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        predict.predict_shards("QC", model_dir, src, out, trust=True, shard_rows=10)
    assert sorted(p.name for p in shards.glob("*.jsonl")) == ["000000.jsonl", "000001.jsonl"] and not out.exists()
    assert not list(shards.glob("*.tmp"))  # the shard being scored when it died left nothing half-written
    with pytest.raises(FileExistsError, match="holds shards of another run \\(shard_rows, shards differ\\)"):
        predict.predict_shards("QC", model_dir, src, out, trust=True, shard_rows=20)  # never mixed
    made = _wrap(monkeypatch)
    counts = predict.predict_shards("QC", model_dir, src, out, trust=True, shard_rows=10)
    assert counts == {"rows": ROWS, "shards": 5, "scored": 3, "skipped": 2} and made[0].calls == 3
    assert out.read_bytes() == reference and not shards.exists()  # the same bytes as one shard, in input order


def test_workers_share_the_shards_and_the_join_is_the_one_process_file(setup, tmp_path, monkeypatch, capsys):
    model_dir, src, reference = setup
    out = tmp_path / "pred.jsonl"
    args = ["predict", "--task", "QC", "--model", str(model_dir), "--trust-model", "--input", str(src),
            "--output", str(out), "--shard-rows", "10"]
    made = _wrap(monkeypatch)
    for worker in (0, 1):  # a SLURM array of two: --worker $SLURM_ARRAY_TASK_ID
        assert main(args + ["--workers", "2", "--worker", str(worker)]) == 0
    assert [m.calls for m in made] == [3, 2] and not out.exists()  # shards 0, 2, 4 and 1, 3
    assert "run without --worker to join them" in capsys.readouterr().out
    assert main(args) == 0  # the join: nothing left to score, no model loaded
    assert len(made) == 2 and out.read_bytes() == reference
    assert "0 of 5 shard(s) scored here, 5 found done" in capsys.readouterr().out


def test_a_bad_line_is_named_before_any_shard_is_scored(setup, tmp_path, monkeypatch):
    model_dir, src, _ = setup
    lines = src.read_text(encoding="utf-8").splitlines()
    lines[40] = lines[40].replace('"origin_query"', '"query"')
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    made = _wrap(monkeypatch)
    with pytest.raises(DataFormatError, match=r"in.jsonl:41: field 'origin_query': missing"):
        predict.predict_shards("QC", model_dir, src, tmp_path / "pred.jsonl", trust=True, shard_rows=10)
    assert not made and not predict.shards_dir(tmp_path / "pred.jsonl").exists()


def test_ray_workers_write_the_one_process_file(setup, tmp_path):
    pytest.importorskip("ray")
    model_dir, src, reference = setup
    out = tmp_path / "pred.jsonl"
    done = subprocess.run([sys.executable, "-m", "mlsearch_lib", "predict", "--task", "QC", "--model", str(model_dir),
                           "--trust-model", "--input", str(src), "--output", str(out), "--shard-rows", "10",
                           "--ray", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "0 of 5 shard(s) scored here, 5 found done" in done.stdout  # the workers scored every shard
    assert out.read_bytes() == reference
