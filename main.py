"""pointcoc command line: one entry point for the models, training and tools.

python main.py list                      registered models
python main.py info --model NAME         parameters and MACs of a model
"""

from __future__ import annotations

import argparse
import sys

import pointcoc
from pointcoc.utils.flops import COUNTED, count_macs


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main.py", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("list", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'coc_*'")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("info", help="parameters and MACs of a registered model")
    p.add_argument("--model", required=True, help="a name from `main.py list`")
    p.add_argument("--num-classes", type=int, default=40)
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
