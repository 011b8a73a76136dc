"""nst serve in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by Selenium
against a uvicorn server on a free localhost port. Screenshots of the main states go to $NST_SCREENSHOTS
(default: a temporary folder)."""
from __future__ import annotations

import io
import os
import re
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
pytestmark = [pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="needs Debian's chromium and chromium-driver "
                                 "(apt-get install chromium chromium-driver)"), pytest.mark.slow]
pytest.importorskip("fastapi", reason="the web extra is not installed")
pytest.importorskip("selenium", reason="selenium is not installed (the test extra has it)")

import uvicorn  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402
from test_serve import TOKEN, host  # noqa: E402,F401  (host: the same plugin host fixture)

from nst.serve.app import create_app  # noqa: E402
from nst.serve.server import listen  # noqa: E402

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1500")
NOT_AN_IMAGE = "error: notes.txt: not an image file (or a format Pillow cannot read)"


class LiveServer:
    """The studio app on 127.0.0.1:<free port>, served by uvicorn in a thread."""

    def __init__(self, app) -> None:
        self.socket = listen("127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}/"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        assert not self.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("NST_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def until(driver, condition, timeout=60.0, what="condition"):
    """Wait for CONDITION; elements the page re-renders while they are read (stale) just mean: look again."""
    return WebDriverWait(driver, timeout, poll_frequency=0.05, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: condition(d), what)


def status(driver) -> str:
    return driver.find_element(By.ID, "status").get_attribute("data-status") or ""


def set_value(driver, name: str, value: str) -> None:
    field = driver.find_element(By.CSS_SELECTOR, f'#main-settings [data-name="{name}"]')
    if field.tag_name == "select":
        Select(field).select_by_value(value)
    else:
        field.clear()
        field.send_keys(value)


def open_page(driver, server: LiveServer) -> None:
    driver.get(f"{server.url}?token={TOKEN}")
    until(driver, lambda d: d.execute_script("return document.body.dataset.ready === '1'"), 30, "the form")


def test_stylise_watch_cancel_and_gallery_after_restart(browser, host, screenshots, tmp_path, one_thread):
    data = tmp_path / "data"
    with LiveServer(create_app(data, "cpu", TOKEN, host=host, preview_seconds=0.1)) as server:
        open_page(browser, server)
        assert "token" not in browser.current_url  # the page keeps the token out of the address bar
        glow = browser.find_element(By.CSS_SELECTOR, 'input[data-plugin="glow"]')  # a plugin's options, by type
        kinds = {e.get_attribute("data-name"): (e.tag_name, e.get_attribute("type"), e.get_attribute("disabled"))
                 for e in browser.find_elements(By.CSS_SELECTOR, '[data-set][data-name^="glow."]')}
        assert kinds == {"glow.gain": ("input", "number", None), "glow.enabled": ("input", "checkbox", None),
                         "glow.mode": ("select", "select-one", None), "glow.bands": ("input", "text", None),
                         "glow.mask": ("input", "text", "true")}
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", glow)  # clear of the sticky Run bar
        glow.click()
        until(browser, lambda d: glow.is_selected(), 10, "the glow plugin ticked")
        dropped = browser.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const blob = await (await fetch("/static/examples/style.jpg")).blob();
            const files = new DataTransfer();
            for (const name of ["a.jpg", "b.jpg"]) files.items.add(new File([blob], name, {type: "image/jpeg"}));
            document.getElementById("styles-drop").dispatchEvent(new DragEvent("drop", {dataTransfer: files, bubbles: true}));
            done(Array.from(document.querySelectorAll("#styles-thumbs img")).map((i) => i.title));""")
        assert dropped == ["a.jpg", "b.jpg"]  # two paintings dropped on the styles zone
        browser.find_element(By.ID, "examples").click()
        until(browser, lambda d: [i.get_attribute("title") for i in d.find_elements(By.CSS_SELECTOR, ".thumbs img")]
              == ["content.jpg", "style.jpg"], 10, "the example thumbnails")
        # the starting values are the device's default job, and its estimate shows before Run
        defaults = browser.find_element(By.ID, "defaults").text  # a loaded machine may be too slow for any gatys size
        assert re.fullmatch(r"Starting values: (gatys at the largest size whose job takes under 45 s on cpu: about \d+ s|"
                            r"method arbitrary, one forward pass: gatys would take .*)\.", defaults), defaults
        size = browser.find_element(By.CSS_SELECTOR, '#main-settings [data-name="size"]').get_attribute("value")
        assert size in ("512", "384", "256", "192", "128")
        Select(browser.find_element(By.ID, "method")).select_by_value("gatys")
        for name, value in (("size", "64"), ("steps", "150"), ("weights", "tiny")):
            set_value(browser, name, value)
        until(browser, lambda d: d.find_element(By.ID, "estimate").get_attribute("data-state") in ("ready", "none", "error")
              and "64x42, 150 steps" in (d.find_element(By.ID, "estimate").get_attribute("title") or ""),
              60, "the estimate of the last settings")  # an earlier answer may still show while the last is asked
        assert glow.is_selected()
        estimate = browser.find_element(By.ID, "estimate").text
        assert re.fullmatch(r"estimate: about \d+ (s|min) on cpu \(plugins glow not counted\)", estimate), estimate
        assert "64x42, 150 steps" in browser.find_element(By.ID, "estimate").get_attribute("title")  # the example's shape
        browser.save_screenshot(str(screenshots / "1-form.png"))

        browser.find_element(By.ID, "run").click()
        previews = set()
        deadline = time.monotonic() + 90
        while (state := status(browser)) != "done":  # read once: the job may finish between two reads
            assert state in ("", "queued", "running") and time.monotonic() < deadline, state
            src = browser.find_element(By.ID, "preview").get_attribute("src") or ""
            if "/preview" in src and state == "running":
                if len(previews) == 1 and src not in previews:
                    browser.save_screenshot(str(screenshots / "2-running.png"))
                previews.add(src)
            time.sleep(0.03)
        assert len(previews) >= 2, previews  # the image changed live, at least twice
        until(browser, lambda d: "/result" in d.find_element(By.ID, "preview").get_attribute("src"), 10, "the result")
        link = browser.find_element(By.ID, "download")
        assert link.is_displayed()
        result = Image.open(io.BytesIO(urllib.request.urlopen(link.get_attribute("href"), timeout=10).read()))
        assert result.format == "PNG" and max(result.size) == 64
        assert browser.execute_script("return document.getElementById('plot').getContext('2d')"
                                      ".getImageData(0, 0, 480, 180).data.some((v, i) => i % 4 === 3 && v > 0)")
        until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#gallery .card"), 10, "the gallery")
        browser.save_screenshot(str(screenshots / "3-done.png"))

        set_value(browser, "steps", "1000000")
        browser.find_element(By.ID, "run").click()
        until(browser, lambda d: status(d) == "running" and "step" in d.find_element(By.ID, "status").text, 60, "a step")
        browser.find_element(By.ID, "cancel").click()
        until(browser, lambda d: status(d) == "cancelled", 30, "cancelled")
        assert not browser.find_element(By.ID, "status").get_attribute("class")  # not shown as an error
        browser.save_screenshot(str(screenshots / "4-cancelled.png"))

        notes = tmp_path / "notes.txt"
        notes.write_text("this is not a picture")
        browser.find_element(By.ID, "content").send_keys(str(notes))
        browser.find_element(By.ID, "run").click()
        until(browser, lambda d: d.find_element(By.ID, "error").is_displayed(), 20, "the error line")
        assert browser.find_element(By.ID, "error").text == NOT_AN_IMAGE
        browser.save_screenshot(str(screenshots / "5-broken-upload.png"))

    with LiveServer(create_app(data, "cpu", TOKEN, host=host, preview_seconds=0.1)) as server:  # a restart
        open_page(browser, server)
        until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery .card")) == 2, 20, "two gallery cards")
        cards = dict(browser.execute_script(  # read in one go: the gallery may be redrawn between two reads
            "return Array.from(document.querySelectorAll('#gallery .card')).map("
            "c => [c.dataset.status, (c.querySelector('.settings') || {}).textContent || ''])"))
        assert set(cards) == {"done", "cancelled"}
        assert "size 64 · steps 150 · weights tiny · plugins glow" in cards["done"]
        done = '#gallery .card[data-status="done"]'
        assert until(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"{done} img").get_attribute("naturalWidth") == "64",
                     10, "the result thumbnail")
        browser.save_screenshot(str(screenshots / "6-gallery-after-restart.png"))
        until(browser, lambda d: d.find_element(By.CSS_SELECTOR, f"{done} .rerun").click() or True, 10,
              "the re-run button")  # re-run with these settings and inputs
        assert browser.find_element(By.CSS_SELECTOR, '#main-settings [data-name="steps"]').get_attribute("value") == "150"
        assert browser.find_element(By.CSS_SELECTOR, 'input[data-plugin="glow"]').is_selected()
        browser.find_element(By.ID, "run").click()
        until(browser, lambda d: status(d) == "done", 90, "the re-run")
        until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#gallery .card")) == 3, 10, "three gallery cards")
        browser.save_screenshot(str(screenshots / "7-rerun.png"))
