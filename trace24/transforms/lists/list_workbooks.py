"""Out layer: each community list as an XLSX workbook an office can answer.

What belongs here: the list's sheet (``SheetSpec``): which columns are answers (处置结果 with its
drop-down, 落实时间 as a date-time, 经办人, 备注; the only cells the sheet protection leaves
editable), their validations and prompts from ``schemas/community_lists.yaml`` (``answers``).
What does not: the workbook format (``xlsx_out.py``), the rows and writing them beside each CSV
(``community_lists.py``), reading answers back (the returns feed).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from trace24.schemas.contracts import SchemaError
from trace24.transforms import xlsx_out
from trace24.transforms.lists.community_lists import ANSWER_COLUMNS, LAYOUT_FILE, LIST_COLUMNS

_EXCEL_EPOCH = dt.date(1899, 12, 30)


@dataclass(frozen=True)
class AnswerLayout:
    sheet_name: str
    values: dict[str, str]          # answer code → the text the drop-down offers
    prompts: dict[str, str]
    time_window_days: int
    handled_by_max: int
    note_max: int
    widths: dict[str, int]          # answer column → its width (they are empty when delivered)
    controlling: tuple[str, ...]    # the answer codes that mean the person is under control
    escalations: dict[str, str]     # answer code → police, street or other_city
    missing_checks: tuple[str, str]   # (escalated to, the text) for a person whose health checks stopped
    corrections: dict[str, str]     # answer: the code whose 备注 corrects; phone_pattern, address_pattern


def load_answer_layout(path: Path | None = None) -> AnswerLayout:
    """The ``answers`` section of the list layout; a broken one raises ``SchemaError``."""
    path = Path(path or LAYOUT_FILE)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))["answers"]
        layout = AnswerLayout(str(data["sheet_name"]), {str(k): str(v) for k, v in data["values"].items()},
                              {k: str(data[k]) for k in ("answer_prompt", "answer_error", "time_prompt", "time_error",
                                                         "handled_by_error", "note_prompt", "note_error")},
                              int(data["time_window_days"]), int(data["handled_by_max"]), int(data["note_max"]),
                              {str(k): int(v) for k, v in data["widths"].items()},
                              tuple(str(k) for k in data["controlling"]),
                              {str(k): str(v) for k, v in data["escalations"].items()},
                              (str(data["missing_checks"]["escalate_to"]), str(data["missing_checks"]["text"])),
                              {k: str(data["corrections"][k]) for k in ("answer", "phone_pattern", "address_pattern")})
    except (OSError, yaml.YAMLError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SchemaError(f"{path}: broken answers: {exc!r}") from exc
    # A list validation's values travel in one formula of at most 255 characters, comma-separated.
    if not layout.values or any("," in v for v in layout.values.values()) \
            or len(",".join(layout.values.values())) > 253:
        raise SchemaError(f"{path}: answers.values must be a few values without commas (255 characters in all)")
    if set(layout.controlling) - set(layout.values):
        raise SchemaError(f"{path}: answers.controlling names answers it does not have: {list(layout.controlling)}")
    if set(layout.escalations) - set(layout.values) or \
            set(layout.escalations.values()) - {"police", "street", "other_city"}:
        raise SchemaError(f"{path}: answers.escalations maps answers to police, street or other_city")
    if layout.missing_checks[0] not in ("police", "street", "other_city"):
        raise SchemaError(f"{path}: answers.missing_checks.escalate_to is police, street or other_city")
    if layout.corrections["answer"] not in layout.values:
        raise SchemaError(f"{path}: answers.corrections.answer is not one of the answers")
    for key in ("phone_pattern", "address_pattern"):
        try:
            if re.compile(layout.corrections[key]).groups != 1:
                raise SchemaError(f"{path}: answers.corrections.{key} needs exactly one group (the value)")
        except re.error as exc:
            raise SchemaError(f"{path}: answers.corrections.{key} is no regular expression: {exc}") from exc
    if set(layout.widths) - set(ANSWER_COLUMNS):
        raise SchemaError(f"{path}: answers.widths names columns that are not answers: {sorted(layout.widths)}")
    return layout


def _serial(day: dt.date) -> int:
    return (day - _EXCEL_EPOCH).days


def sheet_spec(headers: tuple[str, ...], answers: AnswerLayout, as_of: dt.datetime) -> xlsx_out.SheetSpec:
    """The list's sheet: every list column locked text, the answer columns editable and checked."""
    column = {name: LIST_COLUMNS.index(name) for name in ANSWER_COLUMNS}
    styles = [xlsx_out.BODY] * len(LIST_COLUMNS)
    for name in ANSWER_COLUMNS:
        styles[column[name]] = xlsx_out.ANSWER_TIME if name == "controlled_at" else xlsx_out.ANSWER
    window = dt.timedelta(days=answers.time_window_days)
    p = answers.prompts
    validations = (
        xlsx_out.Validation(column["answer"], "list", values=tuple(answers.values.values()),
                            prompt=p["answer_prompt"], error=p["answer_error"]),
        xlsx_out.Validation(column["controlled_at"], "date", low=_serial((as_of - window).date()),
                            high=_serial((as_of + window).date()), prompt=p["time_prompt"], error=p["time_error"]),
        xlsx_out.Validation(column["handled_by"], "textLength", high=answers.handled_by_max,
                            error=p["handled_by_error"]),
        xlsx_out.Validation(column["note"], "textLength", high=answers.note_max, prompt=p["note_prompt"],
                            error=p["note_error"]),
    )
    widths = tuple(answers.widths.get(name, 0) for name in LIST_COLUMNS)
    return xlsx_out.SheetSpec(answers.sheet_name, headers, tuple(styles), validations, min_widths=widths)
