"""The web page of cfsx serve in a real browser (headless Chromium through Selenium): upload an image, wait for
the interpretation, and check that the page shows the encoding the API gives. ``make test-browser`` runs it
(not part of ``make test``); CFSX_SCREENSHOT=path keeps the screenshot there (``make serve-screenshot``)."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

MODEL = "general-cfs2"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    port = free_port()
    cfsx = Path(sys.executable).with_name("cfsx")
    process = subprocess.Popen([str(cfsx), "serve", "--model", MODEL, "--store", str(tmp_path / "store"),
                                "--port", str(port), "--workers", "1"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
            if process.poll() is not None:
                pytest.fail(f"cfsx serve stopped: {process.stdout.read()}")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def chromium():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1600"):
        options.add_argument(argument)
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser") or ""
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def test_the_page_interprets_an_uploaded_image_as_the_api_does(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as shown
    from selenium.webdriver.support.ui import WebDriverWait

    # A simulated diffuse scattering plane, upsampled 3x as a detector would see it.
    from cfsx.config import load_config
    from cfsx.simulation import decode

    demo = load_config("demo", ["encoding.cfs=2", "diffraction.image_size=64"])
    plane = decode(demo, np.array([[-0.25, 0.1, 0.2]]), 5).images[0]
    image = tmp_path / "plane.npy"
    np.save(image, np.kron(plane, np.ones((3, 3))))
    browser = chromium()
    try:
        browser.get(server + "/")
        WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option"))
        browser.find_element(By.ID, "image").send_keys(str(image))
        browser.find_element(By.ID, "go").click()
        WebDriverWait(browser, 300).until(shown.visibility_of_element_located((By.ID, "result")))
        WebDriverWait(browser, 30).until(
            lambda b: b.execute_script("return document.getElementById('interpretation').complete")
        )
        cells = browser.find_elements(By.CSS_SELECTOR, "#encoding td[data-label]")
        on_page = {cell.get_attribute("data-label"): float(cell.text) for cell in cells}
        verdict = browser.find_element(By.ID, "verdict")
        verdict_label, verdict_text = verdict.get_attribute("data-label"), verdict.text
        verdict_colour = verdict.value_of_css_property("border-left-color")
        more = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#more summary")]
        screenshot = tmp_path / "serve.png"
        browser.save_screenshot(str(screenshot))
    finally:
        browser.quit()
    with open(image, "rb") as handle:
        answer = httpx.post(f"{server}/api/v1/interpret", files={"image": ("plane.npy", handle.read())},
                            data={"model": MODEL}, timeout=300).json()  # fmt: skip
    from_api = answer["interpretation"]["encoding"]
    assert set(on_page) == set(from_api) and len(on_page) == 3
    for label, value in from_api.items():
        assert on_page[label] == pytest.approx(value, abs=5e-5)  # the page shows 4 decimals
    assert screenshot.stat().st_size > 10_000
    # the verdict beside the encoding, in its colour, as the API gives it
    expected = answer["interpretation"]["verdict"]
    assert verdict_label == expected["label"] and verdict_text.startswith(expected["label"])
    assert all(reason in verdict_text for reason in expected["reasons"])
    assert verdict_colour != "rgb(136, 136, 136)"  # one of the three verdicts' colours, not the default grey
    # every field of the record that the page does not lay out itself is listed under it, by name
    from cfsx.interpretation.results import generic_fields

    assert more == [name.replace("_", " ") for name, _ in generic_fields()] and more
    if os.environ.get("CFSX_SCREENSHOT"):
        shutil.copy(screenshot, os.environ["CFSX_SCREENSHOT"])
