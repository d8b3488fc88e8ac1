"""The Gradio demo: checkpoint-folder confinement, and the whole app driven in headless Chromium.

The browser test needs Gradio, Playwright (Python package only: it launches Debian's /usr/bin/chromium, no
browser download) and Chromium; .ci/run installs them. Outside CI a missing piece skips it, in CI it fails.
"""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from test_viz_helpers import (
    IMAGE_CLASSES,
    POINT_CLASSES,
    SHARED_DATA,
    image_checkpoint,
    point_checkpoint,
    real_photo,
    sphere_ply,
)

from pointcoc.viz.colors import cluster_colors
from pointcoc.viz.demo import CheckpointFolder, checkpoint_choices

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
POINTS = 256  # the demo's point checkpoint: stage 0 samples 128 anchors
# Every wait is for an event (the server answering, a page element changing); these only bound them, and are
# generous: on shared, loaded CPUs starting the server, an upload or a forward can take minutes. Playwright's
# own default (30 s) applies to nothing here: browser launch, navigation and requests are all given this.
WAIT_S = 600
WAIT_MS = WAIT_S * 1000


def test_checkpoint_folder_lists_and_opens_only_files_inside_it(tmp_path):
    inside = tmp_path / "runs"
    (inside / "a").mkdir(parents=True)
    (inside / "a" / "checkpoint_best.pt").write_bytes(b"x")
    (tmp_path / "secret.pt").write_bytes(b"x")
    (inside / "escape.pt").symlink_to(tmp_path / "secret.pt")
    folder = CheckpointFolder(inside)
    assert folder.names() == ["a/checkpoint_best.pt"]  # the link out of the folder is not offered
    assert folder.path("a/checkpoint_best.pt") == (inside / "a" / "checkpoint_best.pt").resolve()
    for name in ("../secret.pt", "escape.pt", str(tmp_path / "secret.pt"), "a/../../secret.pt"):
        with pytest.raises(ValueError, match="is not a \\*.pt file in"):
            folder.path(name)
    with pytest.raises(ValueError, match="is not a folder"):
        CheckpointFolder(tmp_path / "missing")


def test_checkpoint_list_is_scanned_again(tmp_path):
    folder = CheckpointFolder(tmp_path)
    assert checkpoint_choices(folder, None) == ([], None)  # an empty folder is served: a run may be starting
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "checkpoint_best.pt").write_bytes(b"x")
    assert checkpoint_choices(folder, None) == (["run1/checkpoint_best.pt"], "run1/checkpoint_best.pt")
    (tmp_path / "run0.pt").write_bytes(b"x")
    names, chosen = checkpoint_choices(folder, "run1/checkpoint_best.pt")
    assert names == ["run0.pt", "run1/checkpoint_best.pt"] and chosen == "run1/checkpoint_best.pt"
    (tmp_path / "run1" / "checkpoint_best.pt").unlink()
    assert checkpoint_choices(folder, "run1/checkpoint_best.pt") == (["run0.pt"], "run0.pt")


def _require(condition: bool, reason: str) -> None:
    if not condition:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(checkpoints: Path, log: Path, attempts: int = 3) -> tuple[subprocess.Popen, str]:
    """``main.py demo`` on a free port, once it answers: (process, URL).

    The port is free when picked but bound only after the server has imported torch and Gradio (a minute
    under load), so another process may take it in between: then the server exits saying so, and it is
    started again on another port."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    for _ in range(attempts):
        port = _free_port()
        with open(log, "w") as out:
            server = subprocess.Popen(
                [sys.executable, "main.py", "demo", "--checkpoints", str(checkpoints), "--port", str(port)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        url = f"http://127.0.0.1:{port}/"
        if _answers(url, server):
            return server, url
        if "empty port" not in log.read_text():
            break
    pytest.fail(f"the demo exited with status {server.returncode}: {log.read_text()[-2000:]}")


def _answers(url: str, server: subprocess.Popen) -> bool:
    """Whether the server answers on ``url`` before it exits (polled; bounded by ``WAIT_S``)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=5):
                return True
        except OSError:  # not up yet (refused), or slow to answer: ask again until the deadline
            time.sleep(0.5)
    server.kill()
    pytest.fail(f"the demo did not answer on {url} within {WAIT_S} s")


def _stop(server: subprocess.Popen) -> None:
    server.terminate()
    try:
        server.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _picture(page) -> np.ndarray:
    """The cluster picture the page shows, downloaded from its <img> source."""
    from PIL import Image

    src = page.get_attribute("#clusters img", "src")
    return np.asarray(Image.open(io.BytesIO(page.request.get(src, timeout=WAIT_MS).body())).convert("RGB"))


def _palette_colours(picture: np.ndarray, palette: np.ndarray, min_pixels: int) -> int:
    """How many palette colours cover at least ``min_pixels`` pixels exactly."""
    flat = picture.reshape(-1, 3)
    return sum(int((flat == colour).all(axis=1).sum() >= min_pixels) for colour in palette)


# The outputs of one click: the status line, the picture's source and the predictions' text.
OUTPUTS = """() => [document.querySelector('#status')?.innerText ?? '',
                   document.querySelector('#clusters img')?.getAttribute('src') ?? null,
                   document.querySelector('#predictions')?.innerText ?? '']"""


def _show(page, upload: Path, expect: str, new_picture: bool = True) -> None:
    """Upload ``upload``, press the button, wait until the status line names ``expect`` and (unless an
    error is expected) the picture and the predictions have both changed: Gradio renders the outputs of
    one event separately, so the status alone does not say the others are this run's.

    Each step waits for a state that stays, never for a passing one. The upload box shows the file's name
    as one string only while "Uploading 1 file..."; once uploaded it shows the stem and the extension apart
    ("chelsea", ".png"). Waiting for the name therefore passed only when a poll happened to fall in that
    short upload, which a loaded machine stretches and an idle one may not: this test failed now and then
    that way. So: wait for the cleared box to be empty (its Clear button gone), choose the file, and click
    only once the uploaded file's download link is there (then the server holds it and the click sends it)."""
    clear = page.locator("#upload button[aria-label=Clear]")
    if clear.count():
        clear.click()
        page.wait_for_selector("#upload button[aria-label=Clear]", state="detached", timeout=WAIT_MS)
    page.set_input_files("#upload input[type=file]", str(upload))
    page.wait_for_selector(
        f'#upload a[data-testid="download-link"][download="{upload.name}"]', state="attached", timeout=WAIT_MS
    )
    _, src, predictions = page.evaluate(OUTPUTS)
    page.click("#run")
    page.wait_for_function(
        f"""([t, src, predictions, fresh]) => {{
            const [status, nowSrc, nowPredictions] = ({OUTPUTS})();
            return status.includes(t) && (!fresh || (nowSrc !== null && nowSrc !== src
                                                     && nowPredictions !== predictions));
        }}""",
        arg=[expect, src, predictions, new_picture],
        timeout=WAIT_MS,
    )


@pytest.mark.slow
def test_demo_in_headless_chromium_shows_clusters_and_predictions(tmp_path):
    _require(CHROMIUM.is_file(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    try:
        import gradio  # noqa: F401
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _require(False, f"{exc.name} is missing: pip install -e '.[demo,test]' (.ci/run does)")
    checkpoints = tmp_path / "checkpoints"
    (checkpoints / "points").mkdir(parents=True)
    image_checkpoint(checkpoints / "image.pt")
    point_checkpoint(checkpoints / "points" / "checkpoint_best.pt", POINTS)
    photo = real_photo(tmp_path, "chelsea")
    table = SHARED_DATA / "samples" / "off" / "ModelNet10" / "table" / "train" / "table_0001.off"
    cloud = table if table.is_file() else sphere_ply(tmp_path / "sphere.ply", n=400)
    broken = tmp_path / "broken.ply"
    broken.write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nend_header\n1 2\n")

    started = time.monotonic()
    server, url = _start_server(checkpoints, tmp_path / "demo.log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=str(CHROMIUM), timeout=WAIT_MS,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update"],
            )  # fmt: skip
            context = browser.new_context(viewport={"width": 1300, "height": 1100})
            context.set_default_timeout(WAIT_MS)  # before the first page: navigation, clicks and reads
            context.set_default_navigation_timeout(WAIT_MS)
            page = context.new_page()
            page.goto(url)
            page.wait_for_selector("#run")

            # 1. the photo with the image checkpoint (listed first), colours only (alpha 1)
            page.fill("#alpha input[type=number]", "1")
            page.press("#alpha input[type=number]", "Enter")
            _show(page, photo, "stage 0")
            picture = _picture(page)
            assert picture.shape == (448, 448, 3)
            # narrow CoC-Tiny stage 0: 2x2 centers per region, so 4 colours, each on a visible share
            assert _palette_colours(picture, cluster_colors(4), min_pixels=448 * 448 // 50) >= 2
            assert _palette_colours(picture, cluster_colors(20)[4:], min_pixels=1) == 0
            predictions = page.inner_text("#predictions")
            assert sum(name in predictions for name in IMAGE_CLASSES) == 5
            page.screenshot(path=str(tmp_path / "demo-image.png"), full_page=True)

            # 2. a point cloud with the point checkpoint
            page.get_by_label("checkpoint in").click()
            page.get_by_role("option", name="points/checkpoint_best.pt").click()
            _show(page, cloud, cloud.name)
            picture = _picture(page)
            groups = POINTS // 2
            assert _palette_colours(picture, cluster_colors(groups), min_pixels=4) > groups // 4
            predictions = page.inner_text("#predictions")
            assert sum(name in predictions for name in POINT_CLASSES) == 5
            link = page.get_attribute("#view3d a", "href")  # the 3D view, offered
            view = page.request.get(link, timeout=WAIT_MS).text()
            assert '<canvas id="view"' in view and f"{groups} groups" in view
            page.screenshot(path=str(tmp_path / "demo-points.png"), full_page=True)

            # 3. a broken upload is reported in the page, and the app keeps answering
            _show(page, broken, "error", new_picture=False)
            assert "broken.ply is not a readable PLY file" in page.inner_text("#status")
            _show(page, cloud, cloud.name)
            page.screenshot(path=str(tmp_path / "demo-after-error.png"), full_page=True)
            browser.close()
    finally:
        _stop(server)
        artefacts = os.environ.get("PYTEST_ARTIFACTS")
        if artefacts:
            Path(artefacts).mkdir(parents=True, exist_ok=True)
            for shot in tmp_path.glob("demo-*.png"):
                shutil.copy(shot, Path(artefacts) / shot.name)
    print(f"browser test: {time.monotonic() - started:.1f} s, screenshots in {tmp_path}")
