"""The demo's HTML report in a real browser: headless Chromium loads it, every embedded
image decodes (natural width > 0) and no script error is raised. Skipped, with the reason, only
where no Chromium is installed (``.ci/run`` installs Debian's ``chromium`` when it is missing)."""

import base64
import json
import re
import shutil
import subprocess

import pytest

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium)")

# inserted first in <head>: records every error event (script errors, and resources that fail)
RECORD_ERRORS = ("<script>window.__errors=[];window.addEventListener('error',function(e){"
                 "window.__errors.push(String(e.message||(e.target&&e.target.tagName)||e.type));},true);</script>")
# inserted last in <body>: once everything has loaded, writes the findings into the DOM
CHECK = ("<script>window.addEventListener('load',function(){var imgs=Array.prototype.slice.call(document.images);"
         "var bad=imgs.filter(function(i){return !(i.complete&&i.naturalWidth>0);});"
         "document.body.setAttribute('data-check',JSON.stringify({images:imgs.length,broken:bad.length,"
         "errors:window.__errors}));});</script>")


def browser_check(html: str, tmp_path) -> dict:
    html = html.replace("<head>", "<head>" + RECORD_ERRORS, 1).replace("</body>", CHECK + "</body>", 1)
    page = tmp_path / "checked.html"
    page.write_text(html, encoding="utf-8")
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=20000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r"data-check=\"([^\"]*)\"", out.stdout)
    assert found, f"the check did not run in Chromium:\n{out.stderr[-2000:]}"
    return json.loads(found.group(1).replace("&quot;", '"'))


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    from medloss.demo import run_demo

    path = run_demo(str(tmp_path_factory.mktemp("demo") / "demo"), quick=True, progress=False)
    return (path / "report.html").read_text(encoding="utf-8")


#: the quick demo's figures: 2 binary runs x 2, 2 ordinal runs x 3, the segmentation examples
QUICK_IMAGES = 2 * 2 + 2 * 3 + 1


def test_demo_report_renders_every_image_without_errors(demo_report, tmp_path):
    result = browser_check(demo_report, tmp_path)
    assert result == {"images": QUICK_IMAGES, "broken": 0, "errors": []}


def test_the_check_catches_a_broken_image(demo_report, tmp_path):
    # a PNG whose bytes are not an image, and a script error: both must be reported
    broken = "data:image/png;base64," + base64.b64encode(b"not a png").decode()
    html = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", broken, demo_report, count=1)
    html = html.replace("</body>", "<script>undefined_function_of_the_test();</script></body>", 1)
    result = browser_check(html, tmp_path)
    assert result["broken"] == 1 and result["images"] == QUICK_IMAGES
    assert len(result["errors"]) == 2 and any("undefined_function_of_the_test" in e for e in result["errors"])
