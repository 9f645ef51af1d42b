"""Screenshots of the page `lsllm serve` shows at `/`, for the docs: serves a sequence run and a token run in
turn (a subprocess each, on a free loopback port), submits an example text in headless Chromium and saves
serve_seq.png and serve_token.png (1000x600).

    python benchmarks/serve_screenshots.py runs/sst2 runs/conll --output docs/

Needs the system Chromium and its driver (Debian: apt-get install chromium chromium-driver; or point
CHROME_BIN / CHROMEDRIVER at them) and selenium (the dev extras). Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from lsllm.serve.process import ServerProcess

EXAMPLES = {"seq": "a gorgeous, witty, seductive movie",
            "token": "John Smith flew from Paris to Berlin to meet Angela Merkel ."}
WIDTH, HEIGHT = 1000, 600


def make_driver(width: int = WIDTH, height: int = HEIGHT):
    """Headless system Chromium through the system chromedriver, with a width x height viewport. Both paths
    are given explicitly, so selenium-manager never runs (it would try to download a browser)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = os.environ.get("CHROME_BIN") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver_path = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
    if not binary or not driver_path:
        sys.exit("needs chromium and chromedriver (apt-get install chromium chromium-driver, or set CHROME_BIN "
                 "and CHROMEDRIVER)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--hide-scrollbars",
                f"--window-size={width},{height}", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",  # the viewport itself, not the window
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    driver.set_page_load_timeout(30)
    return driver


def shoot(driver, base: str, text: str, path: Path) -> str:
    """Load the page, submit `text`, wait for the answer and save a screenshot; returns the page's task."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(driver, 120, poll_frequency=0.1)
    driver.get(base + "/")
    box = wait.until(lambda d: d.find_element(By.ID, "text") if d.find_element(By.ID, "text").is_displayed() else None)
    task = driver.execute_script("return info.task")
    box.send_keys(text)
    driver.find_element(By.ID, "submit").click()
    done = "#result .label-row" if task == "seq" else "#result .tagged"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, done) or d.find_element(By.ID, "error").is_displayed())
    if driver.find_element(By.ID, "error").is_displayed():
        sys.exit(f"{base}: the page shows an error: {driver.find_element(By.ID, 'error').text}")
    driver.execute_script("document.activeElement.blur()")  # no caret or focus ring in the picture
    driver.save_screenshot(str(path))
    return task


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("seq_run", type=Path, help="a sequence-classification run folder")
    parser.add_argument("token_run", type=Path, help="a token-tagging run folder")
    parser.add_argument("--output", type=Path, default=Path("docs"), help="folder for the PNGs (default: docs/)")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    driver = make_driver()
    try:
        for task, run in (("seq", args.seq_run), ("token", args.token_run)):
            path = args.output / f"serve_{task}.png"
            with ServerProcess(run) as server:
                shown = shoot(driver, server.url, EXAMPLES[task], path)
            if shown != task:
                sys.exit(f"{run} is a {shown} run, expected a {task} run")
            print(f"wrote {path}")
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
