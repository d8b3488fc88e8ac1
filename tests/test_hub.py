"""The zoo, downloads into the cache (from a server on 127.0.0.1 run by the test), pretrained= loading."""

from __future__ import annotations

import dataclasses
import io
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import pointcoc
from pointcoc.hub import (
    ENTRIES,
    DownloadError,
    checkpoint_dir,
    checkpoint_file,
    list_pretrained,
    pretrained_entry,
)
from pointcoc.hub import pretrained as pretrained_module

ROOT = Path(__file__).resolve().parents[1]


class _Server:
    """Serves ``files`` (path -> bytes); ``/cut/...`` announces the whole file but sends half of it."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files, self.requests = files, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                data = server.files.get(self.path.removeprefix("/cut"))
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2] if self.path.startswith("/cut/") else data)
                self.close_connection = True

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("POINTCOC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "checkpoints"


@pytest.fixture
def published():
    """A small model saved as pointMLP's training script saves it, and a zoo entry for it."""
    source = pointcoc.create_model("pointmlp_elite", num_classes=15)
    buffer = io.BytesIO()
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"net": state, "epoch": 7, "acc": 80.5}, buffer)
    entry = dataclasses.replace(
        pretrained_entry("pointmlp.official_scanobjectnn"), architecture="pointmlp_elite", tag="test_sonn"
    )
    return source, buffer.getvalue(), entry


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def _use_entry(monkeypatch, entry) -> None:
    monkeypatch.setattr(pretrained_module, "pretrained_entry", lambda architecture, tag=None: entry)


def test_first_call_downloads_with_progress_and_caches_the_second_makes_no_request(
    cache, published, monkeypatch, capsys
):
    source, data, entry = published
    with _Server({"/best_checkpoint.pth": data}) as server:
        _use_entry(monkeypatch, dataclasses.replace(entry, url=server.url + "/best_checkpoint.pth"))
        model = pointcoc.create_model("pointmlp_elite", pretrained=True)
        err = capsys.readouterr().err
        assert server.requests == ["/best_checkpoint.pth"]
        assert "pointmlp_elite.test_sonn-best_checkpoint.pth" in err and "100%" in err  # the progress bar
        digest = re.search(r"sha256 ([0-9a-f]{64}) \(not pinned", err)
        assert digest, err
        assert _same_weights(model, source) and model.model_cfg.num_classes == 15
        assert sorted(p.name for p in cache.iterdir()) == ["pointmlp_elite.test_sonn-best_checkpoint.pth"]
        again = pointcoc.create_model("pointmlp_elite", pretrained=True)
        assert server.requests == ["/best_checkpoint.pth"] and _same_weights(again, source)
        # pinned to the hash it printed, the file verifies
        (cache / entry.cache_name).unlink()
        pinned = dataclasses.replace(entry, url=server.url + "/best_checkpoint.pth", sha256=digest[1])
        assert checkpoint_file(pinned).read_bytes() == data
        assert "not pinned" not in capsys.readouterr().err


@pytest.mark.parametrize("failure", ["wrong sha256", "cut mid-file", "unreachable", "not found"])
def test_a_failed_download_leaves_nothing_in_the_cache_and_says_so_in_one_line(
    cache, published, failure, monkeypatch
):
    _, data, entry = published
    with _Server({"/best_checkpoint.pth": data}) as server:
        url = {
            "wrong sha256": server.url + "/best_checkpoint.pth",
            "cut mid-file": server.url + "/cut/best_checkpoint.pth",
            "unreachable": "http://127.0.0.1:9/best_checkpoint.pth",  # discard port: nothing listens
            "not found": server.url + "/missing.pth",
        }[failure]
        sha256 = "0" * 64 if failure == "wrong sha256" else None
        _use_entry(monkeypatch, dataclasses.replace(entry, url=url, sha256=sha256))
        with pytest.raises(DownloadError) as err:
            pointcoc.create_model("pointmlp_elite", pretrained=True)
    message = str(err.value)
    assert "\n" not in message and url in message and "nothing was cached" in message
    assert str(cache / entry.cache_name) in message  # where to put it by hand
    expected = {
        "wrong sha256": "not the pinned 0000",
        "cut mid-file": "cut after",
        "unreachable": "failed",
        "not found": "404",
    }[failure]
    assert expected in message
    assert not cache.exists() or list(cache.iterdir()) == []


def test_a_local_path_works_offline_and_an_entry_without_url_says_where_to_put_the_file(
    cache, published, tmp_path, monkeypatch
):
    source, data, entry = published
    path = tmp_path / "best_checkpoint.pth"
    path.write_bytes(data)
    model = pointcoc.create_model("pointmlp_elite", pretrained=str(path))  # 15 classes: the file's
    assert _same_weights(model, source) and model.model_cfg.num_classes == 15
    by_hand = dataclasses.replace(entry, url=None)
    _use_entry(monkeypatch, by_hand)
    with pytest.raises(ValueError) as err:
        pointcoc.create_model("pointmlp_elite", pretrained=True)
    message = str(err.value)
    assert by_hand.page in message and str(cache / by_hand.cache_name) in message and "\n" not in message
    cache.mkdir(parents=True)
    (cache / by_hand.cache_name).write_bytes(data)  # fetched by hand
    assert _same_weights(pointcoc.create_model("pointmlp_elite", pretrained=True), source)


def test_the_cache_defaults_to_torch_hubs_checkpoints_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("POINTCOC_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert (
        checkpoint_dir()
        == Path(torch.hub.get_dir()) / "checkpoints"
        == tmp_path / "torch" / "hub" / "checkpoints"
    )
    monkeypatch.setenv("POINTCOC_CACHE", str(tmp_path / "pc"))
    assert checkpoint_dir() == tmp_path / "pc" / "checkpoints"


def test_every_published_checkpoint_is_listed_with_its_source_and_figures():
    headline = {e.name: e.metrics for e in ENTRIES}
    assert headline == {
        "coc_tiny.official_in1k": {"top1": 73.2},
        "coc_tiny_plain.official_in1k": {"top1": 73.8},
        "coc_small.official_in1k": {"top1": 78.1},
        "coc_medium.official_in1k": {"top1": 81.2},
        "coc_tiny_plain.official_in1k_2023_03": {"top1": 72.9},
        "coc_tiny.openmixup_in1k": {"top1": 72.7},
        "coc_tiny_plain.openmixup_in1k": {"top1": 73.2},
        "coc_small.openmixup_in1k": {"top1": 77.7},
        "pointmlp.official_modelnet40": {"oa": 94.1, "macc": 91.5},
        "pointmlp.official_scanobjectnn": {"oa": 86.1, "macc": 84.4},
        "pointmlp_elite.official_scanobjectnn": {"oa": 84.1, "macc": 81.7},
        "pointmlp_coc.official_scanobjectnn": {"oa": 86.2, "macc": 84.4},
    }
    assert list_pretrained("coc_tiny.*") == ["coc_tiny.official_in1k", "coc_tiny.openmixup_in1k"]
    assert len({e.cache_name for e in ENTRIES}) == len(ENTRIES)
    for e in ENTRIES:
        assert e.architecture in pointcoc.list_models() and e.page.startswith("https://")
        assert e.layout in ("timm", "mmcv", "pointmlp") and e.licence and e.protocol
        assert e.sha256 is None or re.fullmatch("[0-9a-f]{64}", e.sha256)
        normaliser = "count" if "openmixup" in e.tag or e.tag.endswith("2023_03") else "similarity"
        assert e.aggregation == normaliser, e.name
    for architecture in {e.architecture for e in ENTRIES}:  # the models declare their checkpoints
        declared = pointcoc.create_model(architecture).model_cfg.pretrained
        assert declared == tuple(n.partition(".")[2] for n in list_pretrained(f"{architecture}.*"))
    assert {e.name for e in ENTRIES if e.url is None} == {
        f"{a}.official_in1k" for a in ("coc_tiny", "coc_tiny_plain", "coc_small", "coc_medium")
    } | {"pointmlp_coc.official_scanobjectnn"}  # Google Drive folders


def test_a_tag_fixes_classes_and_normaliser_and_mistakes_are_named():
    model = pointcoc.create_model("coc_tiny_plain.official_in1k_2023_03")  # configuration only, no weights
    assert model.model_cfg.aggregation == "count" and model.model_cfg.num_classes == 1000
    with pytest.raises(ValueError, match="was trained with num_classes=1000, not 10"):
        pointcoc.create_model("coc_tiny", pretrained="openmixup_in1k", num_classes=10)
    with pytest.raises(ValueError, match="was trained with aggregation='count', not 'similarity'"):
        pointcoc.create_model("coc_tiny", pretrained="openmixup_in1k", aggregation="similarity")
    with pytest.raises(ValueError, match=r"neither a tag of coc_tiny \(official_in1k, openmixup_in1k\)"):
        pointcoc.create_model("coc_tiny", pretrained="imagenet")
    with pytest.raises(ValueError, match="coc_tiny has no pretrained tag 'x'"):
        pointcoc.create_model("coc_tiny.x")
    with pytest.raises(ValueError, match="no pretrained checkpoint for pointnet"):
        pointcoc.create_model("pointnet", pretrained=True)


def test_torch_hub_loads_every_model_with_pretrained(published, tmp_path):
    source, data, _ = published
    path = tmp_path / "best_checkpoint.pth"
    path.write_bytes(data)
    model = torch.hub.load(str(ROOT), "pointmlp_elite", source="local", pretrained=str(path), num_classes=15)
    assert _same_weights(model, source)
    import hubconf

    assert all(callable(getattr(hubconf, name)) for name in pointcoc.list_models())
