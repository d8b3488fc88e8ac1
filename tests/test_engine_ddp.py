"""Two gloo processes, started as torchrun starts workers, train to what one process trains."""

import json
import os

import torch
import torch.multiprocessing as mp
from test_engine_helpers import tiny_image_config

import pointcoc
from pointcoc.engine.checkpoint import load_checkpoint
from pointcoc.engine.trainer import train
from pointcoc.utils.constants import IMAGENET_MEAN


def _worker(rank: int, world: int, port: int, out: str) -> None:
    # As under torchrun, whose agent hosts the store: every rank joins it as a client.
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), TORCHELASTIC_USE_AGENT_STORE="True")  # fmt: skip
    torch.set_num_threads(1)
    try:
        train(tiny_image_config(), out)
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path):
    one = train(tiny_image_config(), tmp_path / "one")
    # The store listens before the workers start, on a port the kernel picked for it: no port is chosen,
    # released and bound again later, which another process could take in between (longer under load).
    store = torch.distributed.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
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
