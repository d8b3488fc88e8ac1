"""`python -m experiments.run --smoke`: every row of every table trained, voted and aggregated end to end on
tiny synthetic data, through the real `main.py` commands, run in this process (what keeps the tables from
silently breaking); and both launchers record what a run printed last and how it ended."""

import csv
import json
import sys

import pytest
import torch

from experiments import seeds
from experiments.aggregate import _slug
from experiments.run import main
from experiments.tables import load_table, table_names


def test_launch_runs_the_command_and_records_its_exit_code_and_last_line(tmp_path, capsys):
    log = tmp_path / "logs" / "run.log"
    code, last, seconds = seeds.launch([sys.executable, "-c", "print('first'); print('last'); exit(3)"], log)
    assert (code, last) == (3, "last") and seconds > 0
    assert log.read_text().splitlines()[1:] == ["first", "last"] and "last" in capsys.readouterr().out


def test_launch_in_process_records_errors_and_crashes_like_a_process(tmp_path):
    main_py = [sys.executable, str(seeds.MAIN)]
    threads = torch.get_num_threads()
    code, last, _ = seeds.launch_in_process([*main_py, "info", "--model", "nope"], tmp_path / "a.log")
    assert code == 2 and last.startswith("error: unknown model 'nope'")
    code, last, _ = seeds.launch_in_process([*main_py, "info"], tmp_path / "b.log")  # argparse: --model
    assert code == 2 and "--model" in last
    code, last, _ = seeds.launch_in_process([*main_py, "info", "--model", "pointnet", "--num-classes", "-1"],
                                            tmp_path / "c.log")  # fmt: skip
    # an unexpected failure: one line, as main.py prints it (POINTCOC_DEBUG=1 would show the traceback)
    assert code == 1 and last.startswith("internal error: RuntimeError: ")
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match="only a plain main.py command"):
        seeds.launch_in_process(["torchrun", str(seeds.MAIN), "train"], tmp_path / "d.log")


@pytest.mark.slow
def test_smoke_runs_every_table_and_fills_published_and_measured_columns(tmp_path, capsys):
    out, results = tmp_path / "runs", tmp_path / "results"
    assert main(["--smoke", "--out", str(out), "--results", str(results)]) == 0
    for name in table_names():
        table = load_table(name)
        md = (results / f"{name}.md").read_text()
        lines = {line["row"]: line for line in csv.DictReader((results / f"{name}.csv").open())}
        assert list(lines) == [r.name for r in table.rows]
        first = table.metrics[0]
        for row in table.rows:
            line = lines[row.name]
            done = "0" + (" 0 official" if "official" in table.protocols else "")
            assert line["done"] == done and line["failed"] == line["missing"] == ""
            if "official" in table.protocols:  # its own run: the best test epoch, labelled as such
                best = json.loads((out / name / row.name / "seed0-official" / "metrics.json").read_text())
                assert best["protocol"] == "official" and "val" not in best
                official = float(line[f"{first.name}_test_official_mean"])
                assert official == pytest.approx(100 * best["test_official"]["oa"], abs=1e-4)
                last = float(line[f"{first.name}_official_last_mean"])
                assert last == pytest.approx(100 * best["test_last"]["oa"], abs=1e-4)
            run = out / name / row.name / "seed0"
            metrics = json.loads((run / "metrics.json").read_text())
            figures = (("val_last", metrics["val"]["last"]), ("test", metrics["test"]),
                       ("test_last", metrics["test_last"]))  # fmt: skip
            for figure, split in figures:
                ours = float(line[f"{first.name}_{figure}_mean"])
                assert ours == pytest.approx(100 * split["oa"], abs=1e-4)
            assert float(line["params_m"]) > 0 and float(line["macs_g"]) > 0 and float(line["throughput"]) > 0
            if table.votes:
                votes = json.loads((run / "votes" / "metrics.json").read_text())["test_votes"]
                assert float(line["oa_test_votes_mean"]) == pytest.approx(100 * votes["oa"], abs=1e-4)
            row_lines = [text for text in md.splitlines() if text.startswith(f"| {row.name} |")]
            for source, figures in row.published.items():
                for figure, value in figures.items():
                    assert any(f" {value:.3g} |" in t or f" {value:.1f} |" in t for t in row_lines)
                    assert float(line[f"{figure}_{_slug(source)}"]) == pytest.approx(value)
    imagenet = list(csv.DictReader((results / "imagenet.csv").open()))
    assert imagenet[0]["top1_paper"] == "71.80" and imagenet[0]["top1_readme_2024_02"] == "73.20"
    assert imagenet[1]["top1_readme_2023_03"] == "72.90" and imagenet[1]["top1_readme_2024_02"] == "73.80"
    assert imagenet[0]["top5_test_mean"] != ""  # digits have 10 classes: top-5 is measured

    # a second pass skips every finished seed: nothing is launched again
    capsys.readouterr()
    assert main(["scanobjectnn", "--smoke", "--out", str(out), "--results", str(results)]) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished: skipped") == 6 and "$ " not in printed  # 3 rows x 2 protocols
