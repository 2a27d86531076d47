"""The comparison script at tiny size: two methods plus the probe, one seed, one fraction, one epoch."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import mlflow
import pytest
from bundle_helpers import REPO

from rd_components.embedded import build_dataset


@pytest.mark.slow
def test_compare_tiny(tmp_path):
    datalist = build_dataset(tmp_path / "data", "mni152_tissue", 2, "nifti", patch_size=32, n_train=18, n_val=6, n_test=9,
                             progress=False)
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "compare.py"), "--bundle", "rd_classification_2d",
           "--methods", "student", "rd", "linear_probe", "--seeds", "0", "--label_fractions", "1.0", "--epochs", "1",
           "--out", str(out), "--dataset_dir", str(datalist.parent), "--experiment_name", "cmp",
           "--set", "patch_size=[32,32]", "batch_size=6", "--jobs", "2"]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OMP_NUM_THREADS")}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "2 at a time" in result.stdout
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["method"] for r in rows] == ["student", "rd", "linear_probe"]
    for row in rows:
        assert 0.0 <= float(row["accuracy"]) <= 1.0 and 0.0 <= float(row["macro_f1"]) <= 1.0
        assert int(row["n_labeled"]) == 18 and int(row["n_unlabeled"]) == 0
        assert row["task"] == "mni152_tissue_2d"
    # the teacher branch is scored on test for RD (reprogrammer) and the probe, not the student
    assert 0.0 <= float(rows[1]["teacher_accuracy"]) <= 1.0 and 0.0 <= float(rows[1]["teacher_val_accuracy"]) <= 1.0
    assert rows[0]["teacher_accuracy"] in ("", "nan") and rows[2]["teacher_accuracy"] == rows[2]["accuracy"]
    assert float(rows[0]["params"]) == float(rows[1]["params"])  # same student for every method
    assert "| rd |" in (out / "results.md").read_text() and (out / "results.png").stat().st_size > 0
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = client.search_runs([client.get_experiment_by_name("cmp").experiment_id])
    cells = [r for r in runs if r.info.run_name != "summary"]
    assert sorted(r.info.run_name for r in cells) == ["linear_probe-f1-s0", "rd-f1-s0", "student-f1-s0"]
    assert all(r.info.status == "FINISHED" and "test_accuracy" in r.data.metrics for r in runs if r in cells)

    # started again: the FINISHED cells are not trained again, and score the same
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "0 to train, 2 already FINISHED" in again.stdout
    rerun = list(csv.DictReader(open(out / "results.csv")))
    assert [(r["method"], r["accuracy"]) for r in rerun] == [(r["method"], r["accuracy"]) for r in rows]


def _tiny_grid(tmp_path, out, *extra):
    """The command line of a 2-cell grid (student, mean teacher; one seed, one epoch) on a tiny tissue dataset.

    Two teacher-free methods: the grid machinery (kill, resume, Ray) is what is tested, and
    cells that never build the teacher keep this slow test short."""
    data = tmp_path / "data"
    if not (data / "datalist.json").is_file():
        build_dataset(data, "mni152_tissue", 2, "nifti", patch_size=32, n_train=18, n_val=6, n_test=9, progress=False)
    return [sys.executable, str(REPO / "scripts" / "compare.py"), "--bundle", "rd_classification_2d",
            "--methods", "student", "mean_teacher", "--seeds", "0", "--label_fractions", "0.5", "--epochs", "1",
            "--out", str(out), "--dataset_dir", str(data), "--experiment_name", "cmp",
            "--set", "patch_size=[32,32]", "batch_size=6", "--threads", "1", *extra]


def _accuracies(out):
    return [(r["method"], r["accuracy"], r["teacher_accuracy"]) for r in csv.DictReader(open(out / "results.csv"))]


@pytest.mark.slow
def test_grid_killed_halfway_trains_only_the_missing_cell_and_ray_gives_the_same_table(tmp_path):
    import importlib.util
    import signal
    import time

    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OMP_NUM_THREADS")}
    out = tmp_path / "killed"
    cmd = _tiny_grid(tmp_path, out)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path, env=env,
                            start_new_session=True)
    seen = []
    for line in proc.stdout:  # kill the whole grid (driver and the running cell) once the first cell is in
        seen.append(line)
        if line.startswith("[1/2] trained"):
            time.sleep(5)  # the second cell's run is open in MLflow by now
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert any(s.startswith("[1/2] trained") for s in seen), "".join(seen)[-3000:]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=1500, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "2 cells: 1 to train, 1 already FINISHED" in again.stdout
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = client.search_runs([client.get_experiment_by_name("cmp").experiment_id])
    finished = sorted(r.info.run_name for r in runs if r.info.status == "FINISHED" and r.info.run_name != "summary")
    assert finished == ["mean_teacher-f0.5-s0", "student-f0.5-s0"]
    # the killed attempt, if MLflow saw it start, is retired under another name, not continued
    stale = [r for r in runs if r.info.status != "FINISHED"]
    assert all(r.info.status == "KILLED" and "-stale-" in r.info.run_name for r in stale)

    # the same grid from scratch, as Ray tasks on a local instance (or, without Ray, locally):
    # the same numbers as the grid that was killed and restarted
    has_ray = importlib.util.find_spec("ray") is not None
    clean = tmp_path / "clean"
    extra = ("--executor", "ray", "--jobs", "2") if has_ray else ()
    result = subprocess.run(_tiny_grid(tmp_path, clean, *extra), capture_output=True, text=True, timeout=1500,
                            cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert _accuracies(clean) == _accuracies(out)
    if has_ray:
        assert "as Ray tasks" in result.stdout
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{clean / 'mlruns.db'}")
        runs = client.search_runs([client.get_experiment_by_name("cmp").experiment_id])
        assert sorted(r.info.run_name for r in runs if r.info.status == "FINISHED") == [
            "mean_teacher-f0.5-s0", "student-f0.5-s0", "summary"]


def test_merge_results_and_paired_differences(tmp_path):
    """--merge joins grids of one task; RD's advantage is paired by seed; repeated cells are refused."""
    header = "bundle,method,seed,label_fraction,n_train,accuracy,macro_f1,auc,params,latency_ms,run_id\n"
    first = tmp_path / "a.csv"
    first.write_text(header + "".join(f"b,{m},{s},0.1,10,{acc},0.5,0.7,100,1.0,x\n"
                                      for m, s, acc in [("student", 0, 0.50), ("student", 1, 0.60), ("rd", 0, 0.55), ("rd", 1, 0.70)]))
    second = tmp_path / "b.csv"
    second.write_text(header + "b,kd,0,0.1,10,0.40,0.5,0.7,100,1.0,x\nb,kd,1,0.1,10,0.45,0.5,0.7,100,1.0,x\n"
                      "b,kd,0,1.0,100,0.80,0.8,0.9,100,1.0,x\n")
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "compare.py"), "--merge", str(first), str(second), "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    table = (out / "results.md").read_text()
    assert "| rd | 62.5 ± 10.6" in table
    # rd - student per seed: +5 and +10 points; rd - kd: +15 and +25; 95 % t-intervals (1 dof: t = 12.706)
    assert "| student | +7.5 [-24.3, +39.3] (n=2) |" in table and "| kd | +20.0 [-43.5, +83.5] (n=2) |" in table
    assert "| student | 55.0 ± 7.1 / 50.0 ± 0.0 / 70.0 ± 0.0 (n=2) | - |" in table  # no student cell at 100 %
    assert len(list(csv.DictReader(open(out / "results.csv")))) == 7 and (out / "results.png").stat().st_size > 0
    again = subprocess.run(cmd[:-4] + [str(first), str(first), "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "appear more than once" in again.stderr


def test_merge_segmentation_results_pairs_dice_against_drd(tmp_path):
    """Segmentation rows (mean Dice, HD95) get Dice / HD95 summaries and DRD minus each method in Dice points."""
    header = "bundle,task,method,seed,label_fraction,n_labeled,n_unlabeled,mean_dice,hd95,dice_grey_matter,params,run_id\n"
    rows = [("student", 0, 0.50, 30.0), ("student", 1, 0.60, 20.0), ("drd", 0, 0.55, 25.0), ("drd", 1, 0.70, 15.0)]
    grid = tmp_path / "seg.csv"
    grid.write_text(header + "".join(f"s,t,{m},{s},0.1,12,108,{d},{h},0.5,100,x\n" for m, s, d, h in rows))
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "compare.py"), "--merge", str(grid), "--out", str(out)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    table = (out / "results.md").read_text()
    assert "Dice / HD95" in table and "| drd minus |" in table
    assert "| drd | 62.5 ± 10.6 / 20.0 ± 7.1 (n=2) |" in table
    assert "| student | +7.5 [-24.3, +39.3] (n=2) |" in table  # +5 and +10 Dice points, paired by seed
    assert (out / "results.png").stat().st_size > 0


def test_segmentation_rows_pair_against_the_bundle_default_drd_when_it_ran():
    """The segmentation bundles' default (drd_every_3) is the reference when it ran, DRD every step otherwise."""
    sys.path.insert(0, str(REPO / "scripts"))
    from comparison.kinds import reference_method

    def row(method):
        return {"method": method, "mean_dice": 0.5, "accuracy": float("nan")}

    assert reference_method([row("student"), row("drd"), row("drd_every_3")]) == "drd_every_3"
    assert reference_method([row("student"), row("drd")]) == "drd"
    assert reference_method([row("student"), row("mean_teacher")]) is None
    assert reference_method([{"method": "rd", "accuracy": 0.5}, {"method": "student", "accuracy": 0.4}]) == "rd"


def test_training_order_starts_one_cache_reader_before_the_teacher_free_cells():
    """With two workers, one cache reader starts first and the teacher-free cells fill the other
    worker while it warms the cache; one worker keeps the grid's order. Read from the overlays."""
    sys.path.insert(0, str(REPO / "scripts"))
    from comparison import reads_feature_cache
    from comparison.grid import training_order

    reads = {m: reads_feature_cache("rd_classification_2d", m) for m in ("student", "rd", "kd", "lora", "mean_teacher")}
    assert reads == {"student": False, "rd": True, "kd": True, "lora": False, "mean_teacher": False}
    assert reads_feature_cache("rd_segmentation_3d", "drd") and not reads_feature_cache("rd_segmentation_3d", "student")
    cells = [(f, s, m) for f in (0.1, 1.0) for s in (0, 1) for m in ("student", "rd")]
    order = training_order(cells, 2, reads)
    assert order[0] == (0.1, 0, "rd") and [c[2] for c in order[1:5]] == ["student"] * 4
    assert sorted(order) == sorted(cells) and training_order(cells, 1, reads) == cells


def test_a_failing_cell_leaves_the_others_scored_and_the_grid_exits_non_zero(tmp_path, monkeypatch):
    """The grid driver on its own (cell training and scoring replaced, they are tested end to end
    above): the MLflow experiment exists before the cells start; a cell that fails is reported by
    name, the other cells are still scored and written."""
    sys.path.insert(0, str(REPO / "scripts"))
    import compare
    from comparison import grid

    def train(args, method, seed, fraction, cell, common, threads):
        # the experiment exists before any cell starts: two cells creating it at once would collide
        assert mlflow.MlflowClient(tracking_uri=common["tracking_uri"]).get_experiment_by_name(common["experiment_name"])
        if method == "rd":
            raise RuntimeError(f"training of {cell} failed; see its log")
        return tmp_path

    def score(args, client, experiment, common, method, seed, fraction, cell, threads=None):
        return {"bundle": args.bundle, "method": method, "seed": seed, "label_fraction": fraction, "accuracy": 0.5,
                "macro_f1": 0.5, "auc": 0.5, "params": 1, "latency_ms": 1.0, "run_id": "x"}

    monkeypatch.setattr(grid, "run_cell", train)
    monkeypatch.setattr(grid, "score_cell", score)
    args = compare.parse_args(["--methods", "student", "rd", "kd", "--seeds", "0", "--label_fractions", "0.1",
                               "--out", str(tmp_path / "out"), "--jobs", "2"])
    args.out.mkdir()
    with pytest.raises(SystemExit, match=r"1 of 3 cells failed \(rd-f0.1-s0\)"):
        grid.run_grid(args)
    assert [r["method"] for r in csv.DictReader(open(args.out / "results.csv"))] == ["student", "kd"]
