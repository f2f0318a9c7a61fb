"""trace24 as it is installed: one package with its contracts inside, running outside a checkout."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import PROJECT

SAMPLE_LANDING = PROJECT / "data" / "sample" / "landing"


def test_an_installed_trace24_runs_outside_a_checkout(tmp_path):
    """The wheel carries every contract file and the sample-city generator, and no top-level package
    of the old layout; unpacked away from the checkout, it runs the first sample day from another
    folder and delivers the community lists."""
    source = tmp_path / "source"  # built from a copy: a build writes build/ beside its sources
    for package in ("trace24", "samplecity"):
        shutil.copytree(PROJECT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "wheel"),
                    str(source)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "wheel").glob("trace24-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "trace24/schemas/rules/nhc-v6.yaml" in names and "trace24/schemas/internal.yaml" in names
    assert any(n.startswith("samplecity/") for n in names)
    assert not any(n.startswith(("tests/", "transforms/", "flows/", "schemas/")) for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    away = tmp_path / "elsewhere"
    away.mkdir()
    # The unpacked wheel comes first on the path: the checkout's editable install is not used.
    env = {**os.environ, "PYTHONPATH": str(site), "PREFECT_HOME": str(tmp_path / "prefect")}
    where = subprocess.run([sys.executable, "-c", "import trace24.schemas.contracts as c; print(c.SCHEMAS_DIR)"],
                           cwd=away, env=env, check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where) == site / "trace24" / "schemas"
    subprocess.run([sys.executable, "-m", "trace24.cli", "run", "--landing", str(SAMPLE_LANDING), "--db", "t.duckdb",
                    "--out", "lists", "--as-of", "2020-02-11T00:00", "--no-validate"],
                   cwd=away, env=env, check=True, capture_output=True, text=True)
    manifest = (away / "lists" / "2020-02-11" / "manifest.json")
    assert manifest.exists()
    # A community list, as the manifest names them (the trip and arrival sheets sit beside them).
    lists = [entry["file"] for entry in json.loads(manifest.read_text(encoding="utf-8"))["files"]]
    assert lists
    with (manifest.parent / lists[0]).open(encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle))
    assert "处置措施" in header
