"""Two gloo processes, started as torchrun starts workers, train to what one process trains."""

import json
import os

import torch
import torch.multiprocessing as mp
from test_engine_helpers import tiny_image_config, tiny_point_config

import pointcoc
from pointcoc.engine.checkpoint import load_checkpoint
from pointcoc.engine.sync_bn import GlooSyncBatchNorm, convert_sync_bn, wants_sync_bn
from pointcoc.engine.trainer import train
from pointcoc.utils.constants import IMAGENET_MEAN


def _store() -> torch.distributed.TCPStore:
    """The rendezvous store, hosted here as torchrun's agent hosts it: it listens before the workers start,
    on a port the kernel picked (port 0). No port is chosen, released and bound again later by a worker,
    which another process could take in between (a minute or more under load, while the workers import)."""
    return torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)


def _join(rank: int, world: int, port: int) -> None:
    """The environment torchrun gives a worker: every rank joins the agent's store as a client."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), TORCHELASTIC_USE_AGENT_STORE="True")  # fmt: skip
    torch.set_num_threads(1)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    _join(rank, world, port)
    try:
        train(tiny_image_config(), out)
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    one = train(tiny_image_config(), tmp_path / "one")
    store = _store()
    mp.spawn(_worker, args=(2, store.port, str(tmp_path / "two")), nprocs=2, join=True)
    a = load_checkpoint(tmp_path / "one" / "checkpoint_last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoint_last.pt")
    assert abs(a["history"][0]["loss"] - b["history"][0]["loss"]) < 1e-5  # the loss reduced across ranks
    torch.manual_seed(tiny_image_config().seed)  # the initial weights, as the trainer draws them
    init = pointcoc.create_model("coc_tiny", num_classes=10, **tiny_image_config().model.kwargs)
    moved = max((a["model"][k] - v).abs().max().item() for k, v in init.state_dict().items())
    assert moved > 1e-2  # training changed the weights, so agreeing after it means something
    # the model's interface as the run fed it: 8x8 digits in 3 channels, the recipe's normalisation
    assert a["model_cfg"]["input_size"] == [3, 8, 8] and a["model_cfg"]["mean"] == list(IMAGENET_MEAN)
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, atol=1e-5, rtol=1e-4, msg=f"{key} differs")
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    # metrics reduced across ranks: every validation/test sample counted once
    assert abs(two["val"]["last"]["oa"] - one["val"]["last"]["oa"]) < 1e-9
    assert abs(two["test"]["oa"] - one["test"]["oa"]) < 1e-9
    assert not (tmp_path / "two" / ".checkpoint_last.pt.tmp").exists()


def _tiny_elite() -> torch.nn.Module:
    torch.manual_seed(0)
    return pointcoc.create_model("pointmlp_elite", num_classes=3, num_points=64, k_neighbors=[8, 8, 8, 8],
                                 drop_rate=0.0)  # fmt: skip


def _batch() -> torch.Tensor:
    return torch.randn(4, 64, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _sync_bn_worker(rank: int, world: int, port: int, out: str) -> None:
    """On two gloo processes: a float64 forward / backward of the converted model on half of one batch each,
    then two training runs of the BatchNorm point model, runtime.sync_bn auto and false."""
    _join(rank, world, port)
    torch.distributed.init_process_group("gloo")
    try:
        model = convert_sync_bn(_tiny_elite().double(), torch.device("cpu")).train()
        logits = model(_batch()[rank::world])
        (logits**2).sum().backward()
        grads = {k: p.grad for k, p in model.named_parameters()}
        for g in grads.values():
            torch.distributed.all_reduce(g)
        kinds = sorted({type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__})
        torch.save({"logits": logits.detach(), "grads": grads, "buffers": dict(model.named_buffers()),
                    "kinds": kinds}, f"{out}/module{rank}.pt")  # fmt: skip
        for sync in ("auto", "false"):
            train(tiny_point_config(*SYNC_BN_RUN, f"runtime.sync_bn={sync}"), f"{out}/{sync}")
    finally:
        torch.distributed.destroy_process_group()


# One step (the 12 training shapes in one batch), augmentation off (drawn per rank): the step's forward, its
# loss and the BatchNorm running statistics it records are those of one process on the whole batch. Weights
# after the step are not compared: float32 noise of the statistics flips ReLUs at 0 and max-pool choices,
# which moves gradients by a few percent; the float64 module check compares the gradients instead.
SYNC_BN_RUN = ("train.epochs=1", "train.batch_size=12", "data.augment=false")


def test_sync_bn_on_two_gloo_processes_normalises_over_the_global_batch(tmp_path):
    (tmp_path / "two").mkdir()
    store = _store()
    mp.spawn(_sync_bn_worker, args=(2, store.port, str(tmp_path / "two")), nprocs=2, join=True)

    # the module: half a batch on each process = the whole batch on one, outputs and summed gradients
    model = _tiny_elite().double().train()
    logits = model(_batch())
    (logits**2).sum().backward()
    halves = [torch.load(tmp_path / "two" / f"module{r}.pt") for r in range(2)]
    assert halves[0]["kinds"] == ["GlooSyncBatchNorm"]  # every BatchNorm converted
    for r, half in enumerate(halves):
        torch.testing.assert_close(half["logits"], logits[r::2].detach(), atol=1e-10, rtol=1e-9)
    for name, p in model.named_parameters():
        torch.testing.assert_close(halves[0]["grads"][name], p.grad, atol=1e-9, rtol=1e-7, msg=name)
    for name, b in model.named_buffers():
        torch.testing.assert_close(halves[1]["buffers"][name], b, atol=1e-10, rtol=1e-9, msg=name)

    # the engine: auto turns SyncBN on for a point model on two processes, and the run records it
    one = train(tiny_point_config(*SYNC_BN_RUN), tmp_path / "one")
    synced = json.loads((tmp_path / "two" / "auto" / "metrics.json").read_text())
    plain = json.loads((tmp_path / "two" / "false" / "metrics.json").read_text())
    assert one["distributed"] == {"processes": 1, "batch_per_process": 12, "sync_bn": False}
    assert synced["distributed"] == {"processes": 2, "batch_per_process": 6, "sync_bn": True}
    assert plain["distributed"] == {"processes": 2, "batch_per_process": 6, "sync_bn": False}
    assert abs(synced["history"][0]["loss"] - one["history"][0]["loss"]) < 1e-5
    a = load_checkpoint(tmp_path / "one" / "checkpoint_last.pt")["model"]
    b = load_checkpoint(tmp_path / "two" / "auto" / "checkpoint_last.pt")["model"]
    c = load_checkpoint(tmp_path / "two" / "false" / "checkpoint_last.pt")["model"]
    stats = [k for k in a if k.endswith(("running_mean", "running_var"))]
    for key in stats:  # synced: the statistics of the whole batch ...
        torch.testing.assert_close(b[key], a[key], atol=1e-5, rtol=1e-4, msg=f"{key} differs")
    # ... which BatchNorm over each process's half does not record
    assert max((c[k] - a[k]).abs().max().item() for k in stats) > 1e-2


def test_sync_bn_setting_and_conversion():
    model = pointcoc.create_model("pointmlp_elite", num_classes=3, num_points=64,
                                  k_neighbors=[8, 8, 8, 8])  # fmt: skip
    assert not wants_sync_bn("auto", 1, True) and wants_sync_bn("auto", 2, True)
    assert not wants_sync_bn("auto", 2, False) and wants_sync_bn(True, 2, False)
    assert not wants_sync_bn(False, 8, True)
    before = model.state_dict()
    converted = convert_sync_bn(model, torch.device("cpu"))
    kinds = {type(m) for m in converted.modules()}
    assert GlooSyncBatchNorm in kinds and not any(issubclass(k, torch.nn.modules.batchnorm._BatchNorm)
                                                  and k is not GlooSyncBatchNorm for k in kinds)  # fmt: skip
    assert converted.state_dict().keys() == before.keys()
    # without a process group (and in eval mode) it is plain BatchNorm
    x = torch.randn(2, 64, 3)
    plain = pointcoc.create_model("pointmlp_elite", num_classes=3, num_points=64, k_neighbors=[8, 8, 8, 8])
    plain.load_state_dict(before)
    torch.testing.assert_close(converted.eval()(x), plain.eval()(x))
