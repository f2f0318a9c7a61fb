"""The sample city's community offices answering the lists trace24 delivered to them (名单回执).

Unlike the agencies' feeds this cannot be generated in advance: a list's 回执编号 exists only once
trace24 has delivered it. So the demo runs it between daily runs: it opens each community's
workbook of the run's lists, fills in what the office did, and drops the answered file into that
day's ``community/`` folder of the landing, where the next run reads it. What each office did is
the truth (``answers.csv``), written beside; ``trace24 evaluate --answers`` compares with it.

The faults real offices make, each drawn from its own seeded stream per day and community: an
answer the next day instead (late), a value typed over the drop-down, a 落实时间 typed as the next
day (after the delivery), a neighbour's row answered by the wrong office, and a CSV export with
the columns in another order instead of the workbook. Half the 信息有误 answers write the right
phone in 备注 (电话有误，正确电话1...): trace24 makes it the person's phone.

The same offices report each listed contact's daily health check (健康监测) for the list's day
(``health_checks_<社区编码>.csv``, truth in ``health_checks.csv`` beside ``answers.csv``): now and
then a day missed (two in a row are escalated), a fever or a cough (the person becomes a fever
patient), a 解除观察 reported before the list's 至<date> (refused), and a neighbour's contact
reported by the wrong office.

    python -m samplecity.offices --lists out/lists/2020-02-11 --landing out/landing --truth out/truth/answers.csv
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
from pathlib import Path

import openpyxl

ANSWERS = (("已落实居家隔离", 45), ("已集中隔离", 35), ("已转运", 6), ("已送医", 2), ("联系不上", 4), ("查无此人", 2),
           ("拒不配合", 2), ("信息有误", 2), ("已离汉", 2))
TYPED_OVER = ("已隔离", "居家", "已落实")
TRUTH_HEADER = ["list_date", "delivered_on", "office_code", "row_key", "answer", "controlled_at", "fault",
                "corrected_phone"]
ANSWER_COLUMNS = ("处置结果", "落实时间", "经办人", "备注")
CSV_HEADER = ["经办人", "回执编号", "姓名", "处置结果", "备注", "落实时间"]   # an export with columns moved
LATE, TYPED, FUTURE, WRONG_OFFICE, MOVED = 0.15, 0.02, 0.01, 0.3, 0.2
CORRECTED = 0.5          # of the 信息有误 answers, those with the right phone written in 备注
OBSERVED = ("密切接触者", "密接的密接")          # the categories followed up day by day
CHECK_HEADER = ["回执编号", "监测日期", "体温", "症状", "监测状态"]
CHECK_TRUTH_HEADER = ["check_date", "office_code", "row_key", "temperature_c", "symptoms", "status", "fault"]
MISSED, FEVER, EARLY_RELEASE, WRONG_CHECKER = 0.06, 0.03, 0.02, 0.3


def _answered(truth: Path) -> set[str]:
    if not truth.exists():
        return set()
    with truth.open(encoding="utf-8", newline="") as handle:
        return {row["row_key"] for row in csv.DictReader(handle) if row["fault"] != "late"}


def _choice(rng: random.Random) -> str:
    return rng.choices([a for a, _ in ANSWERS], weights=[w for _, w in ANSWERS])[0]


def answer_lists(lists: Path, landing: Path, truth: Path, seed: int = 2020) -> int:
    """Answer every community workbook under ``lists`` (one run's ``<as-of date>`` folder); return
    the rows answered (truth rows written)."""
    list_date = dt.date.fromisoformat(lists.name)
    folder = landing / lists.name / "community"
    done = _answered(truth)
    books = sorted(p for p in lists.glob("*/*/*.xlsx"))
    truth_rows, neighbours = [], {}
    for book_path in books:
        office = book_path.stem.split("_", 1)[0]
        rng = random.Random(f"{seed}|{list_date}|{office}")
        book = openpyxl.load_workbook(book_path)
        sheet = book.active
        header = [c.value for c in sheet[1]]
        col = {name: header.index(name) for name in ("状态", "姓名", "回执编号", *ANSWER_COLUMNS)}
        rows = [r for r in sheet.iter_rows(min_row=2) if r[col["状态"]].value != "解除"]
        answered = []
        for row in rows:
            key = row[col["回执编号"]].value
            if key in done:
                continue
            answer = _choice(rng)
            at = dt.datetime.combine(list_date, dt.time()) + dt.timedelta(minutes=rng.randint(60, 22 * 60))
            if rng.random() < LATE:        # answered at the next run's lists instead
                truth_rows.append([list_date, "", office, key, answer, "", "late", ""])
                continue
            fault, shown, shown_at, note, phone = "", answer, at, "", ""
            if rng.random() < TYPED:
                fault, shown = "typed_over", rng.choice(TYPED_OVER)
            elif rng.random() < FUTURE:
                fault, shown_at = "future_time", at + dt.timedelta(days=1)
            if answer == "信息有误" and rng.random() < CORRECTED:
                phone = f"1{rng.choice('3456789')}{rng.randrange(10 ** 9):09d}"
                note = f"电话有误，正确电话{phone}"
            answered.append((row, shown, shown_at, note))
            truth_rows.append([list_date, list_date, office, key, answer, at.strftime("%Y-%m-%d %H:%M"), fault,
                               phone])
        worker = f"网格员{rng.randint(1, 9)}"
        neighbours.setdefault(book_path.parent, []).append((office, [(row[col["回执编号"]].value,
                                                                       row[col["姓名"]].value) for row in rows]))
        if not answered:
            continue
        if rng.random() < MOVED:
            target = folder / f"list_returns_{office}.csv"
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("w", encoding="utf-8-sig", newline="") as handle:
                out = csv.writer(handle)
                out.writerow(CSV_HEADER)
                for row, shown, shown_at, note in answered:
                    out.writerow([worker, row[col["回执编号"]].value, row[col["姓名"]].value, shown, note,
                                  shown_at.strftime("%Y-%m-%d %H:%M")])
        else:
            for row, shown, shown_at, note in answered:
                row[col["处置结果"]].value, row[col["落实时间"]].value = shown, shown_at
                row[col["经办人"]].value, row[col["备注"]].value = worker, note or None
            target = folder / f"list_returns_{office}.xlsx"
            target.parent.mkdir(parents=True, exist_ok=True)
            book.save(target)
    # Now and then an office answers a row of the neighbouring community's list as if its own.
    for street, offices in sorted(neighbours.items()):
        rng = random.Random(f"{seed}|{list_date}|{street.name}|neighbour")
        if len(offices) < 2 or rng.random() >= WRONG_OFFICE or not offices[1][1]:
            continue
        office, (key, name) = offices[0][0], offices[1][1][0]
        target = folder / f"list_returns_{office}_补报.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", encoding="utf-8-sig", newline="") as handle:
            out = csv.writer(handle)
            out.writerow(["回执编号", "姓名", "处置结果", "落实时间", "经办人", "备注"])
            out.writerow([key, name, "已落实居家隔离", f"{list_date} 20:00", "网格员", ""])
        truth_rows.append([list_date, list_date, office, key, "已落实居家隔离", f"{list_date} 20:00",
                           "other_community", ""])
    _append(truth, TRUTH_HEADER, truth_rows)
    return len(truth_rows)


def _observation_end(action: str) -> dt.date | None:
    """The list's 处置措施 ends with 至<date> when the observation has an end."""
    return dt.date.fromisoformat(action[-10:]) if "至" in action and len(action) >= 10 else None


def _append(path: Path, header: list[str], rows: list[list]) -> None:
    new = not path.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        if new:
            out.writerow(header)
        out.writerows(rows)


def check_health(lists: Path, landing: Path, truth: Path, seed: int = 2020) -> int:
    """Each community office's health checks of its listed contacts for the lists' day; return the
    truth rows written (a missed check is a truth row too, with no file row)."""
    day = dt.date.fromisoformat(lists.name)
    folder = landing / lists.name / "community"
    truth_rows, neighbours = [], {}
    for list_path in sorted(lists.glob("*/*/*.csv")):
        office = list_path.stem.split("_", 1)[0]
        if not office.isdigit():
            continue                                  # a street's or district's sheet, not a community list
        with list_path.open(encoding="utf-8-sig", newline="") as handle:
            rows = [r for r in csv.DictReader(handle) if r["状态"] != "解除" and r["类别"] in OBSERVED]
        rng = random.Random(f"{seed}|{day}|{office}|checks")
        checks = []
        for row in rows:
            key, ends = row["回执编号"], _observation_end(row["处置措施"])
            draw = rng.random()
            temperature, symptoms, status, fault = f"{rng.uniform(36.0, 37.1):.1f}", "无", "继续观察", ""
            if draw < MISSED:
                truth_rows.append([day, office, key, "", "", "", "missed"])
                continue
            if draw < MISSED + FEVER:
                temperature, symptoms, fault = f"{rng.uniform(37.5, 39.0):.1f}", "发热;咳嗽", "fever"
            elif draw < MISSED + FEVER + EARLY_RELEASE and ends and ends > day:
                status, fault = "解除观察", "early_release"
            checks.append([key, day, temperature, symptoms, status])
            truth_rows.append([day, office, key, temperature, symptoms, status, fault])
        neighbours.setdefault(list_path.parent, []).append((office, [r["回执编号"] for r in rows]))
        if checks:
            _write_checks(folder / f"health_checks_{office}.csv", checks)
    # Now and then an office reports a check of the neighbouring community's contact.
    for street, offices in sorted(neighbours.items()):
        rng = random.Random(f"{seed}|{day}|{street.name}|neighbour-check")
        if len(offices) < 2 or rng.random() >= WRONG_CHECKER or not offices[1][1]:
            continue
        office, key = offices[0][0], offices[1][1][0]
        _write_checks(folder / f"health_checks_{office}_补报.csv", [[key, day, "36.6", "无", "继续观察"]])
        truth_rows.append([day, office, key, "36.6", "无", "继续观察", "other_community"])
    _append(truth, CHECK_TRUTH_HEADER, truth_rows)
    return len(truth_rows)


def _write_checks(target: Path, rows: list[list]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8-sig", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(CHECK_HEADER)
        out.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=Path, required=True, help="One run's lists: <out>/lists/<as-of date>.")
    parser.add_argument("--landing", type=Path, required=True, help="The landing folder the next run reads.")
    parser.add_argument("--truth", type=Path, required=True, help="answers.csv, appended to.")
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()
    print(f"{answer_lists(args.lists, args.landing, args.truth, args.seed)} list rows answered "
          f"(truth: {args.truth})")
    checks = args.truth.with_name("health_checks.csv")
    print(f"{check_health(args.lists, args.landing, checks, args.seed)} health checks (truth: {checks})")


if __name__ == "__main__":
    main()
