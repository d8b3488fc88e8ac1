"""benchmarks.vs_official builds the official module and ours with the same weights, and they agree.

Not timed: each row is built at a small input (``Row.small_shape``) and run through the benchmark's own
agreement check (outputs, and the ``Cluster`` module's input and parameter gradients).
"""

from pathlib import Path

import pytest

from benchmarks.vs_official import AGREEMENT_ATOL, ROWS, agreement, build_pair

OFFICIAL = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


@pytest.fixture(scope="module")
def code():
    if not OFFICIAL.is_dir():
        pytest.skip(f"official checkouts not found at {OFFICIAL}")
    pytest.importorskip("einops", reason="the official code imports einops")
    from benchmarks.official_code import OfficialCode

    return OfficialCode(OFFICIAL)


@pytest.mark.parametrize("key", [k for k in ROWS if k != "coc_small"])  # coc_small: coc_tiny's code path
def test_official_and_ours_agree_in_the_benchmark_setup(code, key):
    pair = build_pair(code, ROWS[key], small=True)
    official, ours = pair.modules["official"], pair.modules["ours"]
    assert sum(p.numel() for p in official.parameters()) == sum(p.numel() for p in ours.parameters())
    diffs = agreement(pair)
    assert set(diffs) == ({"output", "gradients"} if ROWS[key].kind == "module" else {"output"})
    assert max(diffs.values()) <= AGREEMENT_ATOL, diffs


def test_agreement_sees_a_difference(code):
    pair = build_pair(code, ROWS["cluster_s1"], small=True)
    with __import__("torch").no_grad():
        pair.modules["ours"].proj.bias.add_(1e-3)
    diffs = agreement(pair)
    assert diffs["output"] > AGREEMENT_ATOL


def test_stand_ins_are_named(code):
    # On machines without timm / pointnet2_ops the benchmark says what it substituted.
    for stand_in in code.stand_ins:
        assert stand_in.startswith(("timm", "pointnet2_ops"))


@pytest.mark.parametrize("key", ["cluster_s1", "coc_tiny", "pointMLP_CoC"])  # one row of each kind
def test_every_step_the_benchmark_times_runs(code, key):
    # The timed steps themselves (optimiser per the row's kind, official modules declaring no model_cfg).
    from benchmarks.vs_official import steps_of

    row = ROWS[key]
    pair = build_pair(code, row, small=True)
    for side in ("official", "ours"):
        steps = steps_of(pair, row, side)
        assert set(steps) == {"train", "infer"}
        module = pair.modules[side]
        module.zero_grad(set_to_none=True)
        before = [p.detach().clone() for p in module.parameters()]
        for step in steps.values():
            step()
        if row.kind == "module":  # forward + backward, no optimiser
            assert all(p.grad is not None for p in module.parameters()), side
        else:
            changed = any(not b.equal(a) for b, a in zip(before, module.parameters()))
            assert changed, f"{side}: the training step changed no parameter"
