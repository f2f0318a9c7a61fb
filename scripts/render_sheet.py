"""Render a delivered sheet (CSV or a list's XLSX) as its user sees it printed, by LibreOffice Calc
(headless, Debian's `libreoffice-calc-nogui`) to PDF, the first page turned into a PNG (`pdftoppm`,
Debian's `poppler-utils`). For the pictures in docs/ and for looking at a sheet by eye. A workbook
prints with its own page setup; a CSV has none, so its cells (every one as text, as the CSV holds
it) are put on a workbook copy set to landscape, one page wide.

    .venv/bin/python scripts/render_sheet.py out/lists/2020-02-15/江岸区/转运车次单.csv docs/trip-sheet.png
    .venv/bin/python scripts/render_sheet.py out/lists/2020-02-15/江岸区/<街道>/<社区>.xlsx docs/list.png
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _printable_copy(sheet: Path, target: Path) -> Path:
    """The CSV's cells, all as text, in a workbook set to print landscape, one page wide."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    with sheet.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.reader(handle))
    book = Workbook()
    page = book.active
    page.title = sheet.stem[:31]
    for row in rows:
        page.append(row)   # strings stay strings: an ID or a phone is shown as the sheet holds it
    for line in page.iter_rows():
        for cell in line:
            if isinstance(cell.value, str) and cell.value.startswith("="):
                cell.data_type = "s"   # openpyxl would write it as a formula
    for cell in page[1]:
        cell.font = Font(bold=True)
    for index, column in enumerate(zip(*rows, strict=False), start=1):
        width = max(sum(2 if ord(ch) > 0x2E80 else 1 for ch in value) for value in column)
        page.column_dimensions[page.cell(1, index).column_letter].width = min(width + 2, 40)
    page.page_setup.orientation = "landscape"
    page.page_setup.paperSize = page.PAPERSIZE_A4
    page.page_setup.fitToWidth, page.page_setup.fitToHeight = 1, 0
    page.sheet_properties.pageSetUpPr.fitToPage = True
    page.print_title_rows = "1:1"
    book.save(target)
    return target


def render(sheet: Path, png: Path, resolution: int = 200) -> Path:
    soffice = shutil.which("soffice") or shutil.which("libreoffice")
    if not soffice or not shutil.which("pdftoppm"):
        sys.exit("needs LibreOffice and pdftoppm: apt-get install libreoffice-calc-nogui poppler-utils fonts-noto-cjk")
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        source = work / "sheet.xlsx"   # LibreOffice names its output after it
        if sheet.suffix == ".xlsx":
            shutil.copyfile(sheet, source)
        else:
            _printable_copy(sheet, source)
        subprocess.run([soffice, "--headless", f"-env:UserInstallation=file://{work}/profile",
                        "--convert-to", "pdf", "--outdir", str(work), str(source)],
                       check=True, capture_output=True, timeout=180)
        subprocess.run(["pdftoppm", "-png", "-r", str(resolution), "-f", "1", "-l", "1", "-singlefile",
                        str(work / "sheet.pdf"), str(work / "page")], check=True, capture_output=True, timeout=120)
        png.parent.mkdir(parents=True, exist_ok=True)
        _trimmed(work / "page.png", png)
    return png


def _trimmed(page: Path, png: Path, margin: int = 24) -> None:
    """The page without its empty paper around the printed cells (nor the page-number footer)."""
    from PIL import Image, ImageOps

    with Image.open(page) as image:
        gray = ImageOps.invert(image.convert("L")).crop((0, 0, image.width, int(image.height * 0.93)))
        left, top, right, bottom = gray.getbbox() or (0, 0, *image.size)
        box = (max(left - margin, 0), max(top - margin, 0), min(right + margin, image.width),
               min(bottom + margin, image.height))
        image.crop(box).save(png, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sheet", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--resolution", type=int, default=200)
    args = parser.parse_args()
    print(render(args.sheet, args.png, args.resolution))


if __name__ == "__main__":
    main()
