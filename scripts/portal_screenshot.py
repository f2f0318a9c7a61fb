"""The portal as a community office sees it, to PNG, for the README (docs/portal-office.png).

    .venv/bin/python scripts/portal_screenshot.py [--out out] [--docs docs]

Runs on the demo's output (`make demo` first): starts `trace24 portal` on loopback with throwaway
sample accounts, logs in through headless chromium (Debian's chromium and chromium-driver, and a CJK
font such as fonts-wqy-zenhei for the Chinese text) and saves the pages.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_portal_browser import PASSWORD, chrome, free_port, log_in, start_portal  # noqa: E402
from trace24.portal.accounts import Accounts  # noqa: E402
from trace24.portal.snapshot_reader import Snapshot  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out")
    parser.add_argument("--docs", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    (folder / "t_read.duckdb").symlink_to((args.out / "trace24_read.duckdb").resolve())
    (folder / "lists").symlink_to((args.out / "lists").resolve())
    cur, info, _, _ = Snapshot(folder / "t_read.duckdb").state()
    # The community with the most rows on today's list.
    (code,) = cur.execute("""SELECT community_code FROM out_list_rows
                                    WHERE as_of = ? AND community_code IS NOT NULL
                                    GROUP BY ALL ORDER BY count(*) DESC, 1 LIMIT 1""", [info.as_of]).fetchone()
    accounts = Accounts(folder / "portal.sqlite")
    accounts.add_user("office", "office", code, PASSWORD)
    port = free_port()
    server = start_portal(folder, folder / "portal.sqlite", port)
    driver = chrome(folder)
    try:
        log_in(driver, f"http://127.0.0.1:{port}", "office")
        time.sleep(1)
        driver.save_screenshot(str(args.docs / "portal-office.png"))
        print(f"{args.docs / 'portal-office.png'}: {driver.current_url.split(str(port))[1]}")
    finally:
        driver.quit()
        server.terminate()


if __name__ == "__main__":
    main()
