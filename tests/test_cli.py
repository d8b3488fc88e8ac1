import argparse
import subprocess
import sys
from pathlib import Path

import main

ROOT = Path(__file__).resolve().parents[1]


def test_info_reports_parameters_and_macs(capsys):
    assert main.main(["info", "--model", "pointmlp_elite"]) == 0
    out = capsys.readouterr().out
    assert "716,232" in out and "0.90 G per sample" in out and "not counted" in out


def test_unknown_model_is_one_line_error(capsys):
    assert main.main(["info", "--model", "pointmlp_cox"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown model 'pointmlp_cox'") and "\n" not in err


def test_list_runs_as_a_script():
    out = subprocess.run(
        [sys.executable, "main.py", "list", "pointmlp*"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.split() == [
        "pointmlp",
        "pointmlp_coc",
        "pointmlp_coc_elite",
        "pointmlp_elite",
    ]


def test_help_names_the_commands(capsys):
    # in-process: the script itself is started once, above; main() returns argparse's exit status
    assert main.main(["--help"]) == 0 and "info" in capsys.readouterr().out


def test_repeated_set_options_accumulate():
    args = main.build_parser().parse_args(
        [
            "train",
            "--config",
            "c.yaml",
            "--set",
            "train.lr=0.1",
            "seed=1",
            "--set",
            "device=cpu",
            "--out",
            "o",
        ]
    )
    assert args.set == ["train.lr=0.1", "seed=1", "device=cpu"]


def test_mistyped_config_values_are_one_line_errors_naming_the_key(capsys, tmp_path):
    code = main.main(["train", "--config", str(ROOT / "experiments/configs/default.yaml"), "--out",
                      str(tmp_path / "run"), "--set", "train.lr=abc"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "error: train.lr: expected a number, got 'abc'"
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_every_option_has_help_text():
    parser = main.build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {"list", "info", "bench", "train", "test", "visualize", "demo"} <= set(commands)
    for name, command in commands.items():
        for action in command._actions:
            option = "/".join(action.option_strings) or action.dest
            assert isinstance(action, argparse._HelpAction) or action.help, f"{name} {option}: no help"


def test_usage_errors_are_one_line(capsys):
    assert main.main(["train", "--config"]) == 2
    err = capsys.readouterr().err
    assert err == "error: main.py train: argument --config: expected one argument; see main.py train --help\n"
    assert main.main(["--help"]) == 0 and "resume" in capsys.readouterr().out
