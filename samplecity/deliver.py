"""Printing records into the landing area, exactly as each agency's system would, and keeping the
books the truth needs: where every row went (records.csv) and every fault put in (faults.csv)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .base import AGENCY_OF_FEED, EXPECTED, HEADERS, PERSON_COLUMNS, Schedule, fmt_date, fmt_ts
from .faults import render_fault
from .feeds import Record
from .people import HUKOU, KIND_CONTACT_ONLY, KIND_VISITOR, RELATIONS, SPECIAL, Population

FLOAT_FORMAT = {"体温": "{:.1f}", "白细胞计数": "{:.1f}", "淋巴细胞计数": "{:.2f}", "Ct值ORF1ab": "{:.1f}",
                "Ct值N": "{:.1f}"}
XLSX_TIME = dt.datetime(2020, 2, 10, 8, 0, 0)
# The column named in a corrected_row fault: what the correction is about, when several changed.
CHANGE_PRIORITY = ["病例分类", "卡片状态", "检测结果", "病情分型", "出院时间", "退房时间", "联系电话"]
SUBJECT_FEEDS = {"fever_clinic", "inpatients", "lab_results", "case_reports", "investigations", "lodging", "transport"}


def text(column: str, value) -> str:
    """A typed value as the source system prints it."""
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return fmt_ts(value)
    if isinstance(value, dt.date):
        return fmt_date(value)
    if isinstance(value, float):
        return FLOAT_FORMAT.get(column, "{}").format(value)
    return str(value)


def quote_minimal(value: str) -> str:
    """What csv.QUOTE_MINIMAL does to one field (used to print a deliberately broken line)."""
    if any(ch in value for ch in ',"\r\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


@dataclass
class OutFile:
    day: int
    feed: str
    name: str                    # file name inside the agency folder
    kind: str                    # csv / xlsx / parquet / garbage / missing
    encoding: str = "utf-8"
    rows: list = field(default_factory=list)      # (record, version index) in file order
    scan_people: np.ndarray | None = None          # parquet: person per row
    n_rows: int = 0


class Books:
    """records.csv and faults.csv rows, and the landing files written."""

    def __init__(self, out_dir: Path, schedule: Schedule, pop: Population, seed: int):
        self.landing = out_dir / "landing"
        self.schedule = schedule
        self.pop = pop
        self.rng = np.random.Generator(np.random.PCG64([seed, 91]))
        self.files: list[OutFile] = []
        self.records: list[tuple] = []     # (date, agency, feed, relpath, row, record_key, person)
        self.faults: list[tuple] = []      # (date, feed, relpath, row, column, fault, raw, expected)
        self.locations: dict[int, list[tuple[str, str, str, int]]] = {}   # id(record) -> per delivered row
        self.appended_from: int | None = None   # faults from here on (the response feeds') follow the others'

    def relpath(self, f: OutFile) -> str:
        return f"{self.schedule.label(f.day)}/{AGENCY_OF_FEED[f.feed]}/{f.name}"

    def path(self, f: OutFile) -> Path:
        return self.landing / self.relpath(f)

    def fault(self, f: OutFile, row: int | None, column: str, fault: str, raw) -> None:
        raw_text = raw if isinstance(raw, str) else repr(raw) if isinstance(raw, float) else str(raw)
        self.faults.append((self.schedule.label(f.day), f.feed, self.relpath(f), row, column, fault, raw_text,
                            EXPECTED[fault]))

    # -- rendering ---------------------------------------------------------------------------------
    def render(self, f: OutFile, r: Record, vi: int, row: int, xlsx: bool, log: bool) -> list:
        """One printed row; logs its faults (unless it is a duplicate copy)."""
        values = r.versions[vi][1]
        header = HEADERS[r.feed]
        cells = {}
        logged = []
        for column, (fault, param) in r.faults.items():
            if fault == "record_key_missing":
                cells[column] = ""
                logged.append((column, fault, ""))
                continue
            raw = render_fault(fault, column, values, param, xlsx)
            if raw is None:
                continue
            cells[column] = raw
            logged.append((column, fault, raw))
        cols = PERSON_COLUMNS.get(r.feed, {})
        if r.row_fault == "identity_empty":
            for role in ("name", "id", "phone"):
                if cols.get(role):
                    cells[cols[role]] = ""
            logged.append(("", "identity_empty", ""))
        elif r.feed in SUBJECT_FEEDS and r.person >= 0:
            id_col = cols["id"]
            shown = cells.get(id_col, values.get(id_col) or "")
            if self.pop.id_type[r.person] == 1 and r.feed != "lodging":
                logged.append((id_col, "id_passport", shown))
            if self.pop.kind[r.person] in (KIND_VISITOR, KIND_CONTACT_ONLY):
                logged.append((id_col, "not_in_register", shown))
        if log:
            for column, fault, raw in logged:
                self.fault(f, row, column, fault, raw)
        out = []
        for column in header:
            if column in cells:
                out.append(cells[column])
            elif xlsx:
                out.append(values.get(column))
            else:
                out.append(text(column, values.get(column)))
        return out

    def record_key(self, r: Record) -> str:
        if any(fault == "record_key_missing" for fault, _ in r.faults.values()):
            return ""
        return r.key

    def book_row(self, f: OutFile, row: int, r: Record) -> None:
        self.records.append((self.schedule.label(f.day), AGENCY_OF_FEED[f.feed], f.feed, self.relpath(f), row,
                             self.record_key(r), r.person))

    def order_rows(self, f: OutFile) -> list[tuple[Record, int, bool]]:
        """Rows in file order, with duplicate copies re-inserted later in the same file."""
        rows = [(r, vi, False) for r, vi in f.rows]
        copies: dict[int, list[int]] = {}
        for i, (r, _, _) in enumerate(rows):
            if r.row_fault == "duplicate_row":
                copies.setdefault(int(self.rng.integers(i + 1, len(rows) + 1)), []).append(i)
        out = []
        for j in range(len(rows) + 1):
            out.extend((rows[i][0], rows[i][1], True) for i in copies.get(j, []))
            if j < len(rows):
                out.append(rows[j])
        return out

    # -- writers ----------------------------------------------------------------------------------------
    def write_csv(self, f: OutFile) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(HEADERS[f.feed])
        rows = self.order_rows(f)
        for n, (r, vi, copy) in enumerate(rows, start=1):
            cells = self.render(f, r, vi, n, xlsx=False, log=not copy)
            if copy:
                self.fault(f, n, "", "duplicate_row", "")
            if r.row_fault == "malformed_line" and not copy:
                i = HEADERS[f.feed].index("旅馆地址")
                bad = cells[i] + ",A座"    # a comma nobody quoted: one field too many
                self.fault(f, n, "旅馆地址", "malformed_line", bad)
                buf.write(",".join(bad if k == i else quote_minimal(c) for k, c in enumerate(cells)) + "\n")
            else:
                writer.writerow(cells)
            self.book_row(f, n, r)
            if not copy:
                self.locations.setdefault(id(r), []).append((self.schedule.label(f.day), f.feed, self.relpath(f), n))
        f.n_rows = len(rows)
        path = self.path(f)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue().encode(f.encoding))

    def write_xlsx(self, f: OutFile) -> None:
        from openpyxl import Workbook
        from openpyxl.cell import WriteOnlyCell
        from openpyxl.writer.excel import ExcelWriter

        wb = Workbook(write_only=True)
        ws = wb.create_sheet("发热门诊就诊登记")
        ws.append(HEADERS[f.feed])
        rows = self.order_rows(f)
        for n, (r, vi, copy) in enumerate(rows, start=1):
            cells = self.render(f, r, vi, n, xlsx=True, log=not copy)
            if copy:
                self.fault(f, n, "", "duplicate_row", "")
            out = []
            for value in cells:   # real datetime cells carry a date format; serial-number faults do not
                cell = WriteOnlyCell(ws, value=value)
                if isinstance(value, dt.datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm"
                out.append(cell)
            ws.append(out)
            self.book_row(f, n, r)
            if not copy:
                self.locations.setdefault(id(r), []).append((self.schedule.label(f.day), f.feed, self.relpath(f), n))
        f.n_rows = len(rows)
        stamp = dt.datetime.combine(self.schedule.dates[f.day], dt.time(23, 30))
        wb.properties.created = stamp
        wb.properties.modified = stamp
        wb.properties.creator = "HIS"
        raw = io.BytesIO()
        with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
            ExcelWriter(wb, archive).write_data()
        path = self.path(f)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(fixed_zip(raw.getvalue(), stamp))

    def write_garbage(self, f: OutFile) -> None:
        path = self.path(f)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"PK\x03\x04" + self.rng.integers(0, 256, 60, dtype=np.uint8).tobytes())
        self.fault(f, None, "", "unreadable_file", "")

    def write(self, f: OutFile) -> None:
        self.files.append(f)
        if f.kind == "missing":
            self.fault(f, None, "", "missing_feed", "")
            return
        if f.kind == "garbage":
            self.write_garbage(f)
            return
        if f.kind == "xlsx":
            self.write_xlsx(f)
        elif f.kind == "csv":
            self.write_csv(f)
        if f.kind in ("csv", "xlsx") and f.n_rows == 0:
            self.fault(f, None, "", "empty_file", "")

    # -- corrections --------------------------------------------------------------------------------------
    def log_versions(self, records: dict[str, list[Record]]) -> None:
        """Rows later superseded by a corrected version (or by a deletion of the card)."""
        for feed, recs in records.items():
            for r in recs:
                locs = self.locations.get(id(r), [])
                if len(r.rows) < 2 and not (feed == "case_reports" and r.versions[-1][1]["卡片状态"] == "删除"):
                    continue
                deleted = feed == "case_reports" and r.versions[r.rows[-1][1]][1]["卡片状态"] == "删除"
                for k, (date, feed_, rel, row) in enumerate(locs):
                    vi = r.rows[k][1]
                    if deleted:
                        self.faults.append((date, feed_, rel, row, "卡片状态", "deleted_card",
                                            r.versions[vi][1]["卡片状态"], EXPECTED["deleted_card"]))
                        continue
                    if k == len(locs) - 1:
                        continue
                    now, later = r.versions[vi][1], r.versions[r.rows[k + 1][1]][1]
                    changed = [c for c in HEADERS[feed] if text(c, now.get(c)) != text(c, later.get(c))]
                    column = next((c for c in CHANGE_PRIORITY if c in changed), changed[0] if changed else "")
                    self.faults.append((date, feed_, rel, row, column, "corrected_row", text(column, now.get(column)),
                                        EXPECTED["corrected_row"]))


def fixed_zip(data: bytes, stamp: dt.datetime) -> bytes:
    """The same archive with fixed entry times, so that the same seed gives the same bytes."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            fixed = zipfile.ZipInfo(info.filename, date_time=stamp.timetuple()[:6])
            fixed.compress_type = zipfile.ZIP_DEFLATED
            fixed.external_attr = 0o600 << 16
            dst.writestr(fixed, src.read(info.filename))
    return out.getvalue()


# -- the full register, printed column-wise (a million rows must not become a million dicts) -----------
def vocab(words: list[str], index: np.ndarray) -> pa.Array:
    """A string column from a small vocabulary and an index per row (no Python strings per row)."""
    return pa.array(words, pa.string()).take(pa.array(np.asarray(index, dtype=np.int64)))


def register_columns(pop: Population) -> dict[str, list | pa.Array]:
    """The register's columns: the ones that may carry faults as lists, the rest as arrow arrays."""
    n = pop.n_register
    city = pop.city
    hh = pop.household[:n]
    comm = pop.hh_community[hh]
    cs = city.communities
    return {
        "身份证号": list(pop.id_number[:n]), "姓名": list(pop.name[:n]), "性别": vocab(["女", "男"], pop.male[:n]),
        "出生日期": pa.array(pop.birth[:n]).cast(pa.string()), "联系电话": list(pop.phone[:n]),
        "户号": pa.array(pop.hh_number[hh]).cast(pa.string()), "与户主关系": vocab(RELATIONS, pop.relation[:n]),
        "区": vocab([c.district for c in cs], comm), "街道": vocab([c.street for c in cs], comm),
        "社区": vocab([c.name for c in cs], comm), "社区编码": vocab([c.code for c in cs], comm),
        "网格": vocab([f"第{k}网格" for k in range(int(pop.hh_grid.max()) + 1)], pop.hh_grid[hh]),
        "小区": vocab([c.name for c in city.compounds], pop.hh_compound[hh]),
        "楼栋": vocab([f"{k}栋" for k in range(int(pop.hh_building.max()) + 1)], pop.hh_building[hh]),
        "单元": vocab([f"{k}单元" for k in range(int(pop.hh_unit.max()) + 1)], pop.hh_unit[hh]),
        "房号": pa.array(pop.hh_floor[hh].astype(np.int64) * 100 + pop.hh_room[hh]).cast(pa.string()),
        "人口类型": vocab(HUKOU, pop.hukou[:n]), "特殊人群": vocab(SPECIAL, pop.special[:n]),
        "更新时间": pc.strftime(pa.array(pop.updated[:n].astype("datetime64[s]")), format="%Y-%m-%d %H:%M"),
    }


def write_plain(f, columns: list, n: int) -> None:
    """n CSV lines from columns, written by pyarrow to the UTF-8 text file f. A column is an
    arrow array, a numpy integer array, a one-element list (repeated) or a list of strings (checked
    for characters that would need quoting, so that QUOTE_MINIMAL would print the same bytes).
    Used for the register, persons and the scans' records."""
    arrays = []
    for col in columns:
        if isinstance(col, (pa.Array, pa.ChunkedArray)):
            arrays.append(col)
        elif isinstance(col, list) and len(col) == 1 and n != 1:
            arrays.append(pa.array(col, pa.string()).take(pa.array(np.zeros(n, np.int64))))
        elif isinstance(col, np.ndarray) and col.dtype.kind in "iu":
            arrays.append(pa.array(col))
        else:
            a = pa.array(col, pa.string())
            if len(a):
                assert not pc.any(pc.match_substring_regex(a, '[,"\r\n]')).as_py(), "value needs quoting"
            arrays.append(a)
    table = pa.Table.from_arrays(arrays, names=[str(i) for i in range(len(arrays))])
    assert f.encoding.replace("-", "").lower().startswith("utf8")
    f.flush()
    pacsv.write_csv(table, f.buffer, pacsv.WriteOptions(include_header=False, quoting_style="none"))
    f.buffer.flush()


def plan_register_faults(pop: Population, phone_fixes: dict,
                         rng: np.random.Generator) -> dict[int, tuple[str, str, int]]:
    """A few register rows with repairable or flagged faults: person -> (column, fault, param)."""
    n = pop.n_register
    plan: dict[int, tuple[str, str, int]] = {}
    ages = pop._ages[:n]
    x_end = np.flatnonzero(np.array([i.endswith("X") for i in pop.id_number[:n]]))
    has_phone = np.flatnonzero(np.array([bool(p) for p in pop.phone[:n]]))
    old_phone = has_phone[ages[has_phone] >= 60]
    for column, fault, pool, share, minimum in (
            ("身份证号", "id_lowercase_x", x_end, 0.05, 3), ("姓名", "name_spaces", np.arange(n), 0.002, 4),
            ("姓名", "name_fullwidth", np.arange(n), 0.001, 2),
            ("联系电话", "phone_plus86_dashes", has_phone, 0.002, 3),
            ("联系电话", "phone_86_prefix", has_phone, 0.001, 2),
            ("联系电话", "phone_0086", has_phone, 0.001, 2), ("联系电话", "phone_landline", old_phone, 0.002, 2),
            ("联系电话", "phone_empty", has_phone, 0.001, 2)):
        pool = np.array([p for p in pool.tolist() if p not in plan and p not in phone_fixes])
        if len(pool) == 0:
            continue
        count = min(len(pool), max(minimum, int(share * len(pool))))
        for p in sorted(rng.choice(pool, size=count, replace=False).tolist()):
            plan[int(p)] = (column, fault, int(rng.integers(0, 10**6)))
    return plan


def write_register(books: Books, f: OutFile, plan: dict, phone_fixes: dict) -> None:
    """Day 1's full register, with planned faults and the phones that a later delivery corrects."""
    pop = books.pop
    cols = register_columns(pop)
    header = HEADERS["residents"]
    for p, (column, fault, param) in sorted(plan.items()):   # fault columns are lists
        raw = render_fault(fault, column, {column: cols[column][p]}, param)
        cols[column][p] = raw
        books.fault(f, p + 1, column, fault, raw)
    for p, (day, wrong, _when) in sorted(phone_fixes.items()):
        if day < books.schedule.days:   # superseded by the corrected row of a later delivery
            cols["联系电话"][p] = wrong
            books.fault(f, p + 1, "联系电话", "corrected_row", wrong)
    path = books.path(f)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding=f.encoding, newline="") as out:
        csv.writer(out, lineterminator="\n").writerow(header)
        write_plain(out, [cols[c] for c in header], pop.n_register)
    f.n_rows = pop.n_register
    books.files.append(f)
