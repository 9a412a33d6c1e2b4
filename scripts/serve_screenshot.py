"""Start `gantrans serve`, translate two images in headless Chromium, save a screenshot.

python scripts/serve_screenshot.py --ckpt CKPT --output docs/serve.png
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tiling import shapes_scene  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True)
    p.add_argument("--output", default="docs/serve.png")
    p.add_argument("--chromium", default="/usr/bin/chromium")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images = []
        for i, (w, h) in enumerate([(448, 320), (384, 256)]):
            images.append(Path(tmp) / f"circles_{i + 1}.png")
            shapes_scene(w, h, seed=i + 3).save(images[-1])
        cmd = [sys.executable, "-m", "gantrans", "serve", f"ckpt={args.ckpt}", "port=0"]
        server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            url = None
            for line in server.stdout:
                print(line, end="")
                if "serving on http://" in line:
                    url = line.split("serving on ", 1)[1].split()[0]
                    break
            if url is None:
                raise SystemExit("the server did not start")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=args.chromium, args=FLAGS)
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(url)
                page.wait_for_selector("#model option", state="attached")
                page.set_input_files("#files", [str(i) for i in images])
                page.wait_for_function("document.querySelectorAll('img.output').length == 2",
                                       timeout=120_000)  # fmt: skip
                page.wait_for_timeout(300)
                Path(args.output).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=args.output, full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
