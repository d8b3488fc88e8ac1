"""pointcoc command line: one entry point for the models, training and tools.

python main.py                           the main job: train a small point CoC model on the embedded
                                         procedural shapes (CPU, about 3 minutes), then test it
python main.py train --config FILE --out DIR [--set key=value ...]
                                         train; DIR gets config.yaml, metrics.json, checkpoints, TensorBoard,
                                         train.log (a folder holding results is refused)
python main.py train --resume --out DIR [--set ...]
                                         continue the run in DIR (its config.yaml) from checkpoint_last.pt
python main.py test --config FILE --checkpoint PATH --out DIR [--set ...] [--votes N
        --vote-protocol ours|official --vote-repeats R] [--overwrite]
                                         evaluate a checkpoint on data.split (and N-view voting, apart) into
                                         a new folder DIR (--overwrite: a previous test's folder)
python main.py test --model NAME [--pretrained TAG|PATH] --set data.root=DIR
                                         top-1/top-5 of a published ImageNet checkpoint on DIR[/val]
python main.py predict (--checkpoint PATH | --model NAME [--pretrained TAG|PATH]) FILE [FILE ...]
                                         top-5 classes of images and point clouds (FILE.h5:INDEX)
python main.py pretrained [PATTERN]      published checkpoints: source, normaliser, published figures
python main.py list [PATTERN]            registered models
python main.py info --model NAME         parameters and MACs of a model
python main.py bench --model NAME [--batch B --device cpu|cuda --precision fp32|bf16|fp16 --compile
        --channels-last --points N --size S --warmup W --repeats R]
                                         params, MACs, inference and training throughput, peak memory
python main.py visualize (--checkpoint PATH | --model NAME [--pretrained TAG|PATH]) --input FILE
        --out FILE [FILE ...] [--stage S --block B --head H --alpha A --index I]
                                         cluster pictures of an image or a point cloud (.png, .html)
python main.py demo [--checkpoints DIR --pretrained NAME ... --host H --port P --max-upload-mb 20]
                                         Gradio app over the checkpoints in DIR and published NAMEs

Config keys: seed, device, model.name, model.kwargs.*, data.name, data.root, data.split, data.num_points,
train.epochs, train.batch_size, train.lr, ... (pointcoc/engine/config.py lists all). Recipes: experiments/.
Relative paths in a recipe are relative to the recipe's folder; in --set, to the current directory.
Multi-GPU / multi-process: torchrun --nproc_per_node N main.py train ...
Errors are one line; POINTCOC_DEBUG=1 shows the traceback of an unexpected one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

# Busy-waiting OpenMP threads collapse when the cores are shared (measured: 7x slower per training step
# with 2 threads on 2 busy cores); passive waiting costs little when they are not. Must precede torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pointcoc  # noqa: E402
from pointcoc.utils.flops import COUNTED, count_macs  # noqa: E402

if TYPE_CHECKING:
    from pointcoc.engine import Callback, RunConfig

ROOT = Path(__file__).resolve().parent
DEFAULT_CONFIG = ROOT / "experiments" / "configs" / "default.yaml"


def cmd_list(args: argparse.Namespace) -> int:
    for name in pointcoc.list_models(args.pattern):
        print(name)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    model = pointcoc.create_model(args.model, num_classes=args.num_classes)
    example = model.example_input(1)
    params = sum(p.numel() for p in model.parameters())
    macs, by_op = count_macs(model, example)
    print(f"model        {args.model} ({args.num_classes} classes)")
    print(f"input        {list(example.shape)}")
    print(f"parameters   {params:,} ({params / 1e6:.2f} M)")
    print(f"MACs         {macs:,} ({macs / 1e9:.2f} G per sample)")
    for op, n in sorted(by_op.items(), key=lambda kv: -kv[1]):
        print(f"  {op:<22} {n:,}")
    print(f"counted      {COUNTED}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from benchmarks.model_bench import benchmark_model, format_report

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    result = benchmark_model(
        args.model, args.batch, args.device, args.precision, args.compile, args.channels_last,
        args.points, args.size, args.warmup, args.repeats,
    )  # fmt: skip
    print(format_report(result))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from pointcoc.engine import load_config, train
    from pointcoc.engine.runfolder import open_training_folder

    out = Path(args.out)
    config = load_config(_train_config(args), args.set)
    with open_training_folder(out, args.resume):  # the engine holds it too; here the report is logged
        metrics = train(config, out, resume=args.resume, callbacks=training_callbacks(config))
        _report(metrics, out)
    return 0


def _train_config(args: argparse.Namespace) -> Path:
    """--config, or with --resume alone the run's own config.yaml."""
    if args.config is not None:
        return Path(args.config)
    if not args.resume:
        raise ValueError("train needs --config FILE (a recipe, e.g. experiments/configs/default.yaml)")
    saved = Path(args.out) / "config.yaml"
    if not Path(args.out).is_dir():
        raise ValueError(f"--resume: run folder {args.out} does not exist; check --out")
    if not saved.is_file():
        raise ValueError(
            f"--resume: {args.out} holds no config.yaml, so it is no run folder of `main.py train`; "
            "check --out, or give the run's --config"
        )
    return saved


def training_callbacks(config: RunConfig) -> list[Callback]:
    """What the command line adds to the engine's training loop: the TensorBoard cluster pictures
    (``log.cluster_images*``; matplotlib is imported only when they are on)."""
    if config.log.cluster_images_every <= 0:
        return []
    from pointcoc.viz.tensorboard import ClusterPictures

    return [ClusterPictures(config.log.cluster_images, config.log.cluster_images_every)]


def cmd_test(args: argparse.Namespace) -> int:
    if args.model:
        from pointcoc.hub.evaluate import evaluate_pretrained

        print(evaluate_pretrained(args.model, _pretrained(args.pretrained), args.set))
        return 0
    if not (args.config and args.checkpoint and args.out):
        raise ValueError(
            "test needs --config, --checkpoint and --out (or --model NAME --pretrained TAG|PATH "
            "--set data.root=DIR for a published ImageNet checkpoint)"
        )
    from pointcoc.engine import evaluate_checkpoint, load_config
    from pointcoc.engine.runfolder import open_test_folder

    out = Path(args.out)
    config = load_config(args.config, args.set)
    if not Path(args.checkpoint).is_file():  # before a folder is made for the results
        raise ValueError(f"--checkpoint {args.checkpoint} is not a file; give one written by `main.py train`")
    with open_test_folder(out, args.overwrite):
        metrics = evaluate_checkpoint(
            config, args.checkpoint, out, votes=args.votes, vote_protocol=args.vote_protocol,
            repeats=args.vote_repeats,
        )  # fmt: skip
        _report(metrics, out)
    return 0


def _pretrained(value: str | None) -> bool | str:
    """``--pretrained`` absent: the model's default published checkpoint."""
    return True if value is None else value


def cmd_predict(args: argparse.Namespace) -> int:
    from pointcoc.viz import load_checkpoint_model, load_pretrained_model
    from pointcoc.viz.predict import predict_file

    if args.checkpoint:
        viz = load_checkpoint_model(args.checkpoint, clusters=False)
    else:
        viz = load_pretrained_model(args.model, _pretrained(args.pretrained), clusters=False)
    print(f"{viz.name} ({viz.source}){'' if viz.classes else ': no class names known, classes numbered'}")
    for file in args.files:
        print(file)
        for name, p in predict_file(viz, file):
            print(f"  {p:7.2%}  {name}")
    return 0


def cmd_pretrained(args: argparse.Namespace) -> int:
    from pointcoc.hub import pretrained_entry

    for name in pointcoc.list_pretrained(args.pattern):
        e = pretrained_entry(name)
        print(
            f"{name:<38} {e.headline:<19} {e.dataset:<12} {e.layout:<8} {e.aggregation:<10} {e.url or e.page}"
        )
    return 0


def cmd_visualize(args: argparse.Namespace) -> int:
    from pointcoc.viz import load_checkpoint_model, load_named_model, load_pretrained_model, visualize
    from pointcoc.viz.inputs import input_kind, split_index
    from pointcoc.viz.visualize import check_output

    points = input_kind(split_index(args.input, args.index)[0]) == "points"
    outs = [check_output(Path(out), points) for out in args.out]  # before the model runs: fail fast
    if args.checkpoint:
        viz = load_checkpoint_model(args.checkpoint)
    elif args.pretrained:
        viz = load_pretrained_model(args.model, args.pretrained)
    else:
        viz = load_named_model(args.model)
    result = visualize(viz, args.input, args.stage, args.block, args.head, args.alpha, args.index)
    print(result.summary)
    for name, p in result.predictions:
        print(f"  {p:7.2%}  {name}")
    for out in outs:
        result.save(out)
        print(f"wrote {out}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from pointcoc.viz.demo import launch
    except ImportError as exc:
        print(f'error: the demo needs Gradio ({exc}); pip install -e ".[demo]"', file=sys.stderr)
        return 2
    launch(args.checkpoints, args.host, args.port, args.max_upload_mb, args.pretrained)
    return 0


def cmd_main_job(args: argparse.Namespace) -> int:
    """``python main.py`` with no arguments."""
    from pointcoc.engine import load_config, train
    from pointcoc.engine.runfolder import open_training_folder

    out = ROOT / "runs" / time.strftime("main-%Y%m%d-%H%M%S")
    config = load_config(DEFAULT_CONFIG)
    with open_training_folder(out):
        print(f"main job: {config.model.name} on the procedural shapes ({DEFAULT_CONFIG.relative_to(ROOT)})")
        start = time.perf_counter()
        metrics = train(config, out, callbacks=training_callbacks(config))
        _report(metrics, out, time.perf_counter() - start)
        recipe = "python main.py train --config experiments/configs"
        print(f"next: {recipe}/modelnet40.yaml --set data.root=DIR --out runs/mn40")
        print(f"      {recipe}/scanobjectnn_pointmlp_coc.yaml --set data.root=DIR --out runs/sonn")
    return 0


def _report(metrics: dict, out: Path, seconds: float | None = None) -> None:
    from pointcoc.engine.distributed import is_main

    if not is_main():
        return
    rows = [(f"val ({key}{', epoch ' + str(metrics['selection']['best_epoch']) if key == 'best' else ''})",
             metrics["val"][key]) for key in ("last", "best") if "val" in metrics]  # fmt: skip
    rows += [(name, metrics[name]) for name in ("test", "test_last", "test_votes") if name in metrics]
    if "test_official" in metrics:  # the official protocol: selected on the test set itself
        best = metrics["test_official"]
        rows.append((f"official (ep. {best['oa_epoch']}/{best['macc_epoch']})", best))
    print(f"{'split':<22}{'OA':>8}{'mAcc':>8}")
    for name, m in rows:
        print(f"{name:<22}{m['oa']:>8.2%}{m['macc']:>8.2%}")
    if "test_official" in metrics:
        print(metrics["test_official"]["label"])
    if "test_votes_official" in metrics:
        voted = metrics["test_votes_official"]
        for key, label in (("best_of_repeats", f"best of {voted['repeats']}"), ("mean", "mean ± std")):
            std = f" ± {voted['oa']['std']:.2%} / {voted['macc']['std']:.2%}" if key == "mean" else ""
            print(f"{'votes, ' + label:<22}{voted['oa'][key]:>8.2%}{voted['macc'][key]:>8.2%}{std}")
        print(voted["label"])
    if seconds is not None:
        print(f"{'time':<22}{seconds:>7.0f}s")
    print(f"{'metrics':<22}{out / 'metrics.json'}")
    if (out / "checkpoint_last.pt").exists():
        print(f"{'checkpoints':<22}{out / 'checkpoint_best.pt'}, checkpoint_last.pt")
        print(f"{'tensorboard':<22}tensorboard --logdir {out / 'tensorboard'}")


class Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line (usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}; see {self.prog} --help\n")


def _set_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted, YAML value), e.g. train.lr=0.01 data.root=DIR (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="main.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'coc_*'")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("info", help="parameters and MACs of a registered model")
    p.add_argument("--model", required=True, help="a name from `main.py list`")
    p.add_argument("--num-classes", type=int, default=40, help="classifier outputs (default 40)")
    p.set_defaults(func=cmd_info)
    p = sub.add_parser("bench", help="throughput and peak memory of a model (inference and training step)")
    p.add_argument("--model", required=True, help="a name from `main.py list`")
    p.add_argument("--batch", type=int, default=32, help="samples per step (default 32)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"), help="autocast dtype")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (warm-up compiles)")
    p.add_argument("--channels-last", action="store_true", help="image models: NHWC maps and weights")
    p.add_argument("--points", type=int, help="point models: points per cloud (num_points, default 1024)")
    p.add_argument("--size", type=int, help="image models: image side (default 224)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per mode")
    p.add_argument("--repeats", "--steps", type=int, default=10, help="timed steps per mode (median taken)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("train", help="train a model from a YAML recipe, or resume a run")
    p.add_argument(
        "--config",
        help="YAML recipe, e.g. experiments/configs/default.yaml (--resume: by default --out's config.yaml)",
    )
    _set_option(p)
    p.add_argument("--out", required=True, help="run folder; one holding results is refused unless --resume")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out from its checkpoint_last.pt"
    )
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("test", help="evaluate a checkpoint on data.split, or a published one on ImageNet")
    p.add_argument("--config", help="the recipe the checkpoint was trained with")
    p.add_argument("--checkpoint", help="checkpoint_best.pt (or _last) of a training run")
    p.add_argument("--model", help="with --pretrained: a published ImageNet model, e.g. coc_tiny")
    p.add_argument(
        "--pretrained", metavar="TAG|PATH", help="zoo tag or checkpoint file (default: the model's)"
    )
    _set_option(p)
    p.add_argument("--votes", type=int, default=0, help="also report N-view voting (fixed seed), apart")
    p.add_argument(
        "--vote-protocol",
        choices=("ours", "official"),
        default="ours",
        help="ours: N views of the training augmentation, one draw; official: ModelNet40's voting.py "
        "(view 0 clean, cumulative scalings), best of --vote-repeats beside their mean ± std",
    )
    p.add_argument("--vote-repeats", type=int, help="repeats of the official vote (default 300, as there)")
    p.add_argument("--out", help="new folder for config.yaml, metrics.json and test.log")
    p.add_argument("--overwrite", action="store_true", help="replace the results of a previous test in --out")
    p.set_defaults(func=cmd_test)
    p = sub.add_parser("predict", help="top-5 classes of image and point-cloud files")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint written by `main.py train`")
    source.add_argument(
        "--model", help="a model with published weights, e.g. coc_tiny or coc_tiny.openmixup_in1k"
    )
    p.add_argument(
        "--pretrained", metavar="TAG|PATH", help="zoo tag or checkpoint file (default: the model's)"
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="images, point clouds (FILE.h5:INDEX for .h5)")
    p.set_defaults(func=cmd_predict)
    p = sub.add_parser("pretrained", help="list the published checkpoints")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'coc_*'")
    p.set_defaults(func=cmd_pretrained)
    p = sub.add_parser("visualize", help="cluster pictures of one image or point cloud")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint written by `main.py train`")
    source.add_argument(
        "--model", help="a registered model (random weights unless --pretrained), e.g. coc_tiny"
    )
    p.add_argument("--pretrained", metavar="TAG|PATH", help="with --model: a zoo tag or a checkpoint file")
    p.add_argument(
        "--input",
        required=True,
        help="image (.jpg, .png, ...) or point cloud (FILE.h5:INDEX, .txt, .off, .ply)",
    )
    p.add_argument("--index", type=int, help="sample of an .h5 file (or write FILE.h5:INDEX)")
    p.add_argument("--stage", type=int, default=0, help="stage whose clusters are drawn (default 0)")
    p.add_argument("--block", type=int, help="block of the stage (default: its last)")
    p.add_argument("--head", type=int, default=0, help="head whose assignment is drawn (default 0)")
    p.add_argument("--alpha", type=float, default=0.5, help="cluster colour over the image, 0..1")
    p.add_argument(
        "--out",
        nargs="+",
        required=True,
        metavar="FILE",
        help=".png / .jpg picture; .html interactive 3D view (point clouds)",
    )
    p.set_defaults(func=cmd_visualize)
    p = sub.add_parser("demo", help="Gradio app: pick a checkpoint, upload a file, see its clusters")
    p.add_argument("--checkpoints", default="runs", help="folder searched for *.pt checkpoints")
    p.add_argument(
        "--pretrained",
        nargs="+",
        default=[],
        metavar="NAME",
        help="published checkpoints too, e.g. coc_tiny.openmixup_in1k",
    )
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="uploads larger than this are refused")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error ends in one line on stderr and a non-zero exit code (2: the input, 1:
    an unexpected failure, whose traceback ``POINTCOC_DEBUG=1`` shows; 130: interrupted)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed
        return exit_.code if isinstance(exit_.code, int) else 0
    if args.command is None:
        args.func = cmd_main_job
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get("POINTCOC_DEBUG"):
            raise
        print(error_line(err), file=sys.stderr)
        return 2 if isinstance(err, (ValueError, OSError)) else 1
    finally:
        if args.func in (cmd_train, cmd_test, cmd_main_job):  # under torchrun: leave the process group
            from pointcoc.engine.distributed import shutdown

            shutdown()


def error_line(err: Exception) -> str:
    """One line for ``err``: the message of an error in the input (ours name the file or key and the fix;
    the operating system's its file), a pointer to the traceback otherwise."""
    text = " ".join(str(err).split()) or type(err).__name__
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"error: {err.filename}: {err.strerror}"
    if isinstance(err, (ValueError, OSError)):
        return f"error: {text}"
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return f"error: out of memory ({text[:200]}); lower train.batch_size or data.num_points"
    pointer = "rerun with POINTCOC_DEBUG=1 for the traceback"
    return f"internal error: {type(err).__name__}: {text[:300]}; {pointer}"


if __name__ == "__main__":
    sys.exit(main())
