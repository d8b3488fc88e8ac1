"""experiments/: statistics over seeds, the tables' markdown/CSV, and the runner's skip / resume / failure
bookkeeping (the engine replaced by a fake launcher; the real one runs in test_experiments_smoke.py)."""

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from experiments import aggregate, seeds
from experiments.aggregate import format_stat, mean_std
from experiments.run import main
from experiments.tables import load_table, table_names


def split(oa: float, macc: float) -> dict:
    return {"oa": oa, "macc": macc, "per_class": {}}


def finished_metrics(test_oa: float, test_macc: float = 0.5) -> dict:
    """A metrics.json as `main.py train` writes it (the keys the tables read)."""
    return {
        "val": {"last": split(0.80, 0.70), "best": split(0.82, 0.72)},
        "test": split(test_oa, test_macc),
        "selection": {"best_epoch": 1},
        "timing": {"train_s": 120.0},
        "peak_memory": {"cpu_max_rss_mb": 512.0, "cuda_max_allocated_mb": None},
    }


def plan(tmp_path, table="scanobjectnn", row="pointmlp", seed_list=(0,), protocol="heldout"):
    t = load_table(table)
    return seeds.plan(t, [t.row(row)], list(seed_list), tmp_path, True, [], (protocol,))


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")


def test_mean_and_sample_std_match_hand_computed_values():
    mean, std = mean_std([85.0, 86.0, 87.5])
    assert mean == pytest.approx(86.0 + 1 / 6)
    # deviations -7/6, -1/6, 4/3: squares sum to 114/36; divided by n - 1 = 2
    assert std == pytest.approx(math.sqrt(57) / 6)
    assert mean_std([2.0, 4.0]) == (3.0, pytest.approx(math.sqrt(2)))
    assert mean_std([70.0]) == (70.0, None)
    assert format_stat([85.0, 86.0, 87.5], 3) == "86.17 ± 1.26"
    assert format_stat([70.0], 1) == "70.00 ± —"
    assert format_stat([2.0, 4.0], 3) == "3.00 ± 1.41 (n=2)"  # a seed lacks this figure
    assert format_stat([], 3) == "—"


def official_metrics(oa: float, macc: float) -> dict:
    """An official-protocol run: best test epoch, mAcc its own maximum, no validation split."""
    return {
        "protocol": "official",
        "test_official": {"oa": oa, "macc": macc, "oa_epoch": 180, "macc_epoch": 150},
        "test_last": split(oa - 0.02, macc - 0.02),  # an official-protocol column of its own
        "timing": {"train_s": 60.0},
        "peak_memory": {"cpu_max_rss_mb": 512.0, "cuda_max_allocated_mb": None},
        "distributed": {"processes": 2, "batch_per_process": 16, "sync_bn": True},
    }


def test_table_shows_stats_published_difference_and_every_missing_or_failed_seed(tmp_path):
    runs = plan(tmp_path, seed_list=(0, 1, 2, 3, 4))
    for run, oa in zip(runs, (0.85, 0.86, 0.875)):
        write_json(run.path / "metrics.json", {**finished_metrics(oa), "test_last": split(oa - 0.01, 0.49)})
    write_json(runs[0].votes_path / "metrics.json", {"test_votes": split(0.87, 0.6)})
    write_json(runs[1].path / "status.json", {"votes": {"returncode": 1, "last_line": "error: no votes"}})
    write_json(runs[3].path / "status.json", {"train": {"returncode": 1, "last_line": "RuntimeError: boom"}})
    touch(runs[4].path / "checkpoint_last.pt")  # killed mid-run
    more = plan(tmp_path, seed_list=(5,))  # never launched
    official = plan(tmp_path, seed_list=(10, 11), protocol="official")  # runs of the official protocol
    for run, (oa, macc) in zip(official, ((0.86, 0.84), (0.87, 0.85))):
        write_json(run.path / "metrics.json", official_metrics(oa, macc))
    table = load_table("scanobjectnn")
    md_path, csv_path = aggregate.write(table, runs + more + official, {}, tmp_path / "results", "cmd")
    md = md_path.read_text()

    # OA: n per protocol, val last, val best, test, test at the last epoch (heldout runs only), votes (one
    # seed), official best test epoch and last epoch; published paper and fixed-code figures, each Δ against
    # our official figure
    oa = (
        "| pointmlp | 3 | 2 | 80.00 ± 0.00 | 82.00 ± 0.00 | 86.17 ± 1.26 | 85.17 ± 1.26 | 87.00 ± — (n=1) "
        "| 86.50 ± 0.71 | 84.50 ± 0.71 | 85.4 | +1.10 | 86.1 | +0.40 |"
    )
    macc = (
        "| pointmlp | 3 | 2 | 70.00 ± 0.00 | 72.00 ± 0.00 | 50.00 ± 0.00 | 49.00 ± 0.00 | 60.00 ± — (n=1) "
        "| 84.50 ± 0.71 | 82.50 ± 0.71 | 83.9 | +0.60 | 84.4 | +0.10 |"
    )
    assert oa in md.split("## mAcc")[0] and macc in md.split("## mAcc")[1]
    assert (
        "| pointmlp | 0 1 2 3 4 5 10 official 11 official | 0 1 2 10 official 11 official | 3 | 4 | 5 |" in md
    )
    assert "pointmlp seed 3: failed: exit 1: RuntimeError: boom" in md
    assert "pointmlp seed 4: incomplete: checkpoint_last.pt but no metrics.json" in md
    assert "pointmlp seed 1: voting failed: exit 1: error: no votes" in md
    # every published source names where it is from, which code, which protocol and how it was checked
    assert '**paper** (official protocol): Ma et al., "Image as Set of Points", ICLR 2023, Table 2' in md
    assert "**README fixed std** (official protocol): pointMLP-pytorch README at 1ab7f04" in md
    assert "Code: the std-fixed pointMLP-pytorch code" in md and "Checked: ../shared/reference/" in md
    assert "| 2 × 16, SyncBN |" in md

    (line,) = list(csv.DictReader(csv_path.open()))
    assert float(line["oa_test_mean"]) == pytest.approx(86.0 + 1 / 6, abs=1e-4)
    assert float(line["oa_test_std"]) == pytest.approx(math.sqrt(57) / 6, abs=1e-4)
    assert line["oa_test_n"] == "3" and line["oa_test_votes_n"] == "1" and line["oa_test_official_n"] == "2"
    assert float(line["oa_paper"]) == 85.4 and float(line["oa_paper_diff"]) == pytest.approx(1.1, abs=1e-4)
    assert float(line["macc_readme_fixed_std"]) == 84.4
    states = (line["done"], line["failed"], line["incomplete"], line["missing"])
    assert states == ("0 1 2 10 official 11 official", "3", "4", "5")
    assert line["processes_x_batch"] == "2 × 16, SyncBN"


def test_heldout_figures_are_compared_when_no_official_run_exists(tmp_path):
    runs = plan(tmp_path, seed_list=(0, 1))
    for run in runs:
        write_json(run.path / "metrics.json", finished_metrics(0.85))
    md = aggregate.write(load_table("scanobjectnn"), runs, {}, tmp_path / "r", "cmd")[0].read_text()
    # the official column stays empty and so do the differences: published figures are official ones
    row = "| pointmlp | 2 | 0 | 80.00 ± 0.00 | 82.00 ± 0.00 | 85.00 ± 0.00 | — | — | — | — "
    assert row + "| 85.4 | — | 86.1 | — |" in md


def test_image_table_reports_top1_top5_and_dashes_without_published_figures(tmp_path):
    (run,) = plan(tmp_path, "mnist", "coc_tiny_small")
    metrics = finished_metrics(0.9)
    metrics["test"]["top5"] = 0.99
    write_json(run.path / "metrics.json", metrics)
    md = aggregate.write(load_table("mnist"), [run], {}, tmp_path / "r", "cmd")[0].read_text()
    assert "## top-1 (%)" in md and "## top-5 (%)" in md
    assert "| coc_tiny_small | 1 | 0 | 80.00 ± — | 82.00 ± — | 90.00 ± — | — | — | — | — |" in md
    assert "| coc_tiny_small | 1 | 0 | — | — | 99.00 ± — | — | — | — | — |" in md  # no top-5 on val here
    assert "Published: — (none exists" in md


def fake_launcher(monkeypatch, result=(0, "ok", 1.0), write=None):
    calls = []

    def launch(command, log):
        calls.append(command)
        if write is not None:
            write(command)
        return result

    monkeypatch.setattr(seeds, "launch", launch)
    return calls


def test_runner_skips_finished_resumes_killed_and_starts_missing_seeds(tmp_path, monkeypatch):
    finished, killed, fresh = plan(tmp_path, seed_list=(0, 1, 2))
    write_json(finished.path / "metrics.json", finished_metrics(0.9))
    (finished.path / "config.yaml").write_text(yaml.safe_dump(finished.config.to_dict()))
    touch(killed.path / "checkpoint_last.pt")
    (killed.path / "config.yaml").write_text(yaml.safe_dump(killed.config.to_dict()))

    def engine(command):  # what a successful `main.py train` leaves behind
        out = command[command.index("--out") + 1]
        write_json(Path(out) / "metrics.json", finished_metrics(0.8))

    calls = fake_launcher(monkeypatch, write=engine)
    assert [seeds.train(r) for r in (finished, killed, fresh)] == [True, True, True]
    assert len(calls) == 2  # the finished seed was not launched
    assert "--resume" in calls[0] and str(killed.path) in calls[0]
    assert "--resume" not in calls[1] and "seed=2" in calls[1]
    assert all(r.state() == (seeds.DONE, "") for r in (finished, killed, fresh))


def test_runner_records_a_failure_and_refuses_a_run_of_another_config(tmp_path, monkeypatch):
    failing, other = plan(tmp_path, seed_list=(0, 1))
    fake_launcher(monkeypatch, result=(1, "RuntimeError: out of memory", 3.0))
    assert seeds.train(failing) is False
    status = json.loads((failing.path / "status.json").read_text())["train"]
    assert status["returncode"] == 1 and status["last_line"] == "RuntimeError: out of memory"
    state, detail = failing.state()
    assert state == seeds.FAILED and "RuntimeError: out of memory" in detail

    fake_launcher(monkeypatch, result=(0, "done", 1.0))  # exit 0 without metrics is still a failure
    assert seeds.train(failing) is False and "metrics.json is missing" in failing.state()[1]

    write_json(other.path / "metrics.json", finished_metrics(0.9))
    changed = other.config.to_dict()
    changed["train"]["epochs"] = 7
    (other.path / "config.yaml").write_text(yaml.safe_dump(changed))
    with pytest.raises(ValueError, match="another config .*train.epochs: 7 -> 1"):
        seeds.train(other)


def test_list_names_every_table_and_its_rows(capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in table_names():
        assert name in out
        for row in load_table(name).rows:
            assert row.name in out
    assert "scanobjectnn" in out and "pointmlp_coc" in out and "10 votes" in out


def test_clear_errors_for_unknown_table_row_bad_seed_and_unreadable_metrics(tmp_path, capsys):
    assert main(["nope"]) == 2
    assert "unknown table 'nope'; choose from" in capsys.readouterr().err
    assert main(["mnist", "--rows", "nope"]) == 2
    assert "--rows: nope is in none of the tables" in capsys.readouterr().err
    assert main(["mnist", "--seeds", "1", "1"]) == 2
    assert "--seeds: give distinct non-negative integers" in capsys.readouterr().err
    assert main([]) == 2 and "name a table" in capsys.readouterr().err

    (run,) = plan(tmp_path, "mnist", "coc_tiny_small")
    run.path.mkdir(parents=True)
    (run.path / "metrics.json").write_text("{truncated")
    args = ["mnist", "--smoke", "--seeds", "0", "--out", str(tmp_path), "--aggregate-only"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{run.path / 'metrics.json'} is unreadable" in err and "delete it" in err


def test_aggregate_only_writes_the_tables_with_every_seed_missing(tmp_path, capsys):
    args = ["modelnet40", "--seeds", "0", "1", "--out", str(tmp_path / "runs")]
    assert main([*args, "--results", str(tmp_path / "res"), "--aggregate-only"]) == 1  # nothing finished
    md = (tmp_path / "res" / "modelnet40.md").read_text()
    assert "| pointmlp | 0 | 0 | — | — | — | — | — | — | — | 94.1 | — |" in md
    # each seed is planned under both protocols of the table, the official one labelled
    assert "| pointmlp_coc | 0 1 0 official 1 official | — | — | — | 0 1 0 official 1 official |" in md
    assert "pointmlp_coc" in (tmp_path / "res" / "modelnet40.csv").read_text()
    main([*args, "--protocols", "heldout", "--results", str(tmp_path / "only"), "--aggregate-only"])
    assert "| pointmlp_coc | 0 1 | — | — | — | 0 1 |" in (tmp_path / "only" / "modelnet40.md").read_text()
