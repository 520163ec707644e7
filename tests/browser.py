"""Headless Chromium for the report tests: the page's DOM after its scripts ran, and a
screenshot that must not be blank. .ci/run installs Debian's chromium, so in CI a missing
browser fails the test; elsewhere it is skipped with the line that installs it."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]


def chromium() -> str:
    browser = next(
        (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None
    )
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI has no chromium: scripts/system-deps.sh should have installed it")
        pytest.skip("no chromium on this machine (apt-get install -y chromium)")
    return browser


def render(page: Path) -> tuple[str, dict[str, str]]:
    """The DOM of ``page`` and the data-* attributes its body ends with (the image check's)."""
    command = [chromium(), *FLAGS, "--dump-dom", page.resolve().as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, "chromium returned no page"
    return dom, dict(re.findall(r'(data-[\w-]+)="(\d+)"', body.group(1)))


def assert_screenshot_has_content(page: Path, name: str, size: tuple[int, int] = (1200, 2400)) -> None:
    """A screenshot of ``page``, kept with the test artifacts, is a page with content, not a blank one."""
    from PIL import Image

    artifacts = Path(os.environ.get("MODELPRINT_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / name
    window = f"--window-size={size[0]},{size[1]}"
    command = [chromium(), *FLAGS, "--hide-scrollbars", window, f"--screenshot={shot}", page.resolve().as_uri()]
    subprocess.run(command, capture_output=True, timeout=120)
    image = Image.open(shot).convert("L")
    assert image.size == size
    histogram = image.histogram()
    assert sum(1 for count in histogram if count > 50) > 20, "the screenshot is nearly one colour"
    assert histogram[255] < 0.97 * sum(histogram), "the screenshot is nearly all white"
