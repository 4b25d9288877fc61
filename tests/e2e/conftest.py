"""Fixtures for the browser tests: the real binary on a temporary data directory, and headless
Chromium (Debian's chromium + chromium-driver) driven by python3-selenium. Screenshots of each
screen go to tests/e2e/screenshots/ (not committed)."""
import base64
import os
import sys

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from server import Server  # noqa: E402

SHOTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "screenshots")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
WIDTH, HEIGHT = 1280, 1000


@pytest.fixture(scope="session")
def ui_server(binary, model, tmp_path_factory):
    s = Server(binary, model, tmp_path_factory.mktemp("e2e") / "data").start()
    yield s
    assert s.stop() == 0


class Browser:
    """The driver plus the few things every test needs: open a route, wait, screenshot, API calls."""

    def __init__(self, driver, server):
        self.d, self.server, self.url = driver, server, server.url
        self.shots = 0

    def open(self, route=""):
        """A fresh page load (a get() that only changes the hash would keep the page)."""
        self.d.get("about:blank")
        self.d.get(f"{self.url}/{route}")
        self.wait(lambda d: d.execute_script("return document.readyState") == "complete")

    def go(self, route):
        """Navigates inside the page (hash routes), as a link would."""
        self.d.execute_script("location.hash = arguments[0]", route)

    def wait(self, cond, timeout=60, msg=""):
        return WebDriverWait(self.d, timeout, poll_frequency=0.05,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(cond, msg)

    def keys(self, *keys):
        """Key presses to whatever has the focus (as a user types; file inputs take no paths this way)."""
        ActionChains(self.d).send_keys(*keys).perform()

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def el(self, css):
        return self.d.find_element("css selector", css)

    def els(self, css):
        return self.d.find_elements("css selector", css)

    def text(self, css):
        return self.el(css).text

    def shot(self, name, full=True):
        """Saves screenshots/NN-name.png: the whole page (beyond the viewport) when full."""
        os.makedirs(SHOTS, exist_ok=True)
        self.shots += 1
        path = os.path.join(SHOTS, f"{self.shots:02d}-{name}.png")
        self.js("return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        params = {"format": "png", "captureBeyondViewport": full}
        if full:
            m = self.d.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": m["width"], "height": m["height"], "scale": 1}
        data = self.d.execute_cdp_cmd("Page.captureScreenshot", params)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path

    def api(self, method, path, **kw):
        return requests.request(method, self.url + path, timeout=60, **kw)

    def console_errors(self):
        return [e["message"] for e in self.d.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture(scope="session")
def browser(ui_server):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={WIDTH},{HEIGHT}", "--lang=en-US", "--hide-scrollbars"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_script_timeout(60)
    # the same viewport whatever the window decorations: what the screenshots and layout checks see
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
    yield Browser(driver, ui_server)
    driver.quit()
