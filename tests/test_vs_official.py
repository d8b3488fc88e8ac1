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


@pytest.mark.parametrize("key", ["pointMLP", "pointMLP_CoC"])
def test_training_forward_and_gradients_agree_with_the_official_model(code, key):
    # Training takes shorter routes than evaluation in our point models (the transfer layer's products on the
    # N points before the grouping, the cluster block's v and proj once per group with the group means inside
    # the operator, fused BatchNorm+ReLU and residual-unit backwards): in float64, the training-mode output
    # and every parameter's gradient must still be the official module's.
    import torch

    from pointcoc.models.pointmlp import convert_official_state_dict

    pair = build_pair(code, ROWS[key], small=True)
    x = pair.inputs.double()
    grad_out = None
    outputs, grads = {}, {}
    for side, module in pair.modules.items():
        module.double().train()
        for layer in module.modules():
            if isinstance(layer, torch.nn.Dropout):
                layer.p = 0.0
        out = module(x.clone())
        grad_out = torch.randn_like(out) if grad_out is None else grad_out
        out.backward(grad_out)
        outputs[side] = out.detach()
        grads[side] = {name: p.grad for name, p in module.named_parameters()}
    torch.testing.assert_close(outputs["ours"], outputs["official"], rtol=1e-9, atol=1e-9)
    official = convert_official_state_dict(grads["official"], cluster=key == "pointMLP_CoC")
    assert set(official) == set(grads["ours"])
    scale = max(g.abs().max() for g in official.values())  # biases before a BatchNorm have none
    for name, grad in grads["ours"].items():
        assert (grad - official[name]).abs().max() <= 1e-9 * scale, name


def test_the_compiled_training_step_runs_and_matches(code):
    # --compile: our training step through torch.compile; same gradients as the eager step.
    import torch

    from benchmarks.vs_official import steps_of

    row = ROWS["cluster_s1"]
    grads = []
    for compiled in (False, True):
        pair = build_pair(code, row, small=True)
        module = pair.modules["ours"]
        steps_of(pair, row, "ours", compiled=compiled)["train"]()
        grads.append([p.grad.clone() for p in module.parameters()])
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5)
