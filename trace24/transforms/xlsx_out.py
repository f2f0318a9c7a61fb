"""Out stage, files: XLSX workbooks of one sheet, their rows rendered in the database, written
all-or-nothing and byte-identical for the same inputs.

What belongs here: the sheet XML a row becomes (``row_xml_sql``: every cell an inline string, so
nothing a feed delivers can become a formula, control characters a workbook cannot hold dropped),
the parts around it (styles with a text format, a header style and unlocked answer cells; frozen
header row; column widths; print setup; sheet protection; drop-down and length validations) and
the zip with fixed metadata. What does not: which rows and columns a list has
(``lists/list_workbooks.py``), CSV (``csv_out.py``).

Why not openpyxl to write: it wrote 3.5 k rows a second here (a 1 M city's lists have ~85 k rows
a run, ten times that at 10 M); the database renders the same rows in a fraction of a second.
openpyxl reads the workbooks back in the tests (decisions/0043).
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

# Cell styles (cellXfs): 0 body text (locked, text format, so 420102... stays text), 1 header,
# 2 an answer cell (unlocked, text), 3 an answer date-time cell (unlocked, yyyy-mm-dd hh:mm).
BODY, HEADER, ANSWER, ANSWER_TIME = 0, 1, 2, 3
STYLE_ATTRIBUTE = {BODY: "", HEADER: ' s="1"', ANSWER: ' s="2"', ANSWER_TIME: ' s="3"'}

_ILLEGAL_XML = r"[\x{0}-\x{8}\x{B}\x{C}\x{E}-\x{1F}\x{FFFE}\x{FFFF}]"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Validation:
    """One data validation over a column's body cells: ``kind`` is ``list`` (``values`` the
    drop-down), ``date`` (``low``/``high`` as dates, formula serials) or ``textLength`` (``high``
    the most characters)."""
    column: int                      # 0-based
    kind: str
    values: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    prompt: str = ""
    error: str = ""


@dataclass(frozen=True)
class SheetSpec:
    name: str
    headers: tuple[str, ...]
    styles: tuple[int, ...]          # per column: BODY, ANSWER or ANSWER_TIME
    validations: tuple[Validation, ...] = ()
    max_width: int = 40
    min_widths: tuple[int, ...] = ()   # per column; an answer column is empty but needs room


def row_xml_sql(cells: str, spec: SheetSpec) -> str:
    """SQL for one ``<row>`` of a VARCHAR[] expression: its body cells as inline strings in column
    order, then the answer cells, written empty with their style (a workbook delivers questions:
    an answer column holds nothing yet, but must be unlocked before anyone types into it).

    The body cells are joined first and escaped once per row, not per cell: a city's lists are a
    million cells. U+E000 (a private-use character no feed means, dropped from the data) separates
    them while escaping; control characters a workbook cannot hold are dropped too."""
    body = [i for i, style in enumerate(spec.styles) if style == BODY]
    if body != list(range(len(body))):
        raise ValueError("a sheet's body columns come first, its answer columns after them")
    answers = "".join(f"<c{STYLE_ATTRIBUTE[style]}/>" for style in spec.styles[len(body):])
    joined = (f"array_to_string(list_transform(({cells})[1:{len(body)}], "
              "lambda cell: replace(coalesce(cell, ''), chr(57344), '')), chr(57344))")
    text = (f"replace(replace(replace(regexp_replace({joined}, '{_ILLEGAL_XML}', '', 'g'), "
            "'&', '&amp;'), '<', '&lt;'), '>', '&gt;')")
    open_cell, close_cell = '<c t="inlineStr"><is><t>', "</t></is></c>"
    row = f"'{open_cell}' || replace({text}, chr(57344), '{close_cell}{open_cell}') || '{close_cell}'"
    return f"'<row>' || replace({row}, '{open_cell}{close_cell}', '<c/>') || '{answers}</row>'"


def width_sql(cells: str, column: int) -> str:
    """SQL for the display width of one cell (1-based ``column``): a CJK character counts two, as
    Excel draws it; ASCII one. UTF-8 bytes (3 for CJK, 1 for ASCII) and characters, averaged."""
    return f"(strlen(coalesce({cells}[{column}], '')) + length(coalesce({cells}[{column}], ''))) // 2"


def column_letter(index: int) -> str:
    """0 → A, 25 → Z, 26 → AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _sheet_xml(spec: SheetSpec, body: str, rows: int, widths: Sequence[int]) -> str:
    last_column, last_row = column_letter(len(spec.headers) - 1), rows + 1
    header = "".join(f'<c s="1" t="inlineStr"><is><t>{escape(h)}</t></is></c>' for h in spec.headers)
    header = f"<row>{header}</row>"
    least = spec.min_widths or (0,) * len(widths)
    cols = "".join(
        f'<col min="{i + 1}" max="{i + 1}" '
        f'width="{max(min(max(w, len(spec.headers[i]) * 2, 4), spec.max_width), least[i]) + 2}" '
        f'customWidth="1"{STYLE_ATTRIBUTE[spec.styles[i]].replace(" s=", " style=")}/>'
        for i, w in enumerate(widths))
    checks = []
    for v in spec.validations:
        ref = f"{column_letter(v.column)}2:{column_letter(v.column)}{max(last_row, 2)}"
        messages = (f' showInputMessage="1" prompt={quoteattr(v.prompt)}' if v.prompt else "") + \
                   (f' showErrorMessage="1" error={quoteattr(v.error)}' if v.error else "")
        if v.kind == "list":
            formulas = f'<formula1>{escape(chr(34) + ",".join(v.values) + chr(34))}</formula1>'
            checks.append(f'<dataValidation type="list" allowBlank="1"{messages} sqref="{ref}">{formulas}'
                          "</dataValidation>")
        elif v.kind == "date":
            checks.append(f'<dataValidation type="date" operator="between" allowBlank="1"{messages} sqref="{ref}">'
                          f"<formula1>{v.low:g}</formula1><formula2>{v.high:g}</formula2></dataValidation>")
        else:
            checks.append(f'<dataValidation type="textLength" operator="lessThanOrEqual" allowBlank="1"{messages} '
                          f'sqref="{ref}"><formula1>{v.high:g}</formula1></dataValidation>')
    validations = f'<dataValidations count="{len(checks)}">{"".join(checks)}</dataValidations>' if checks else ""
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        '<sheetPr><pageSetUpPr fitToPage="1"/></sheetPr>'
        f'<dimension ref="A1:{last_column}{last_row}"/>'
        '<sheetViews><sheetView workbookViewId="0"><pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" '
        'state="frozen"/><selection pane="bottomLeft" activeCell="A2" sqref="A2"/></sheetView></sheetViews>'
        '<sheetFormatPr defaultRowHeight="15"/>'
        f"<cols>{cols}</cols><sheetData>{header}{body}</sheetData>"
        # Protected without a password: it keeps the list's cells from being typed over by
        # mistake, and leaves sorting, filtering and resizing to the office.
        '<sheetProtection sheet="1" objects="1" scenarios="1" formatColumns="0" formatRows="0" sort="0" '
        'autoFilter="0"/>'
        f'<autoFilter ref="A1:{last_column}{last_row}"/>'
        f"{validations}"
        '<printOptions gridLines="1"/>'
        '<pageMargins left="0.4" right="0.4" top="0.5" bottom="0.5" header="0.3" footer="0.3"/>'
        '<pageSetup paperSize="9" orientation="landscape" fitToWidth="1" fitToHeight="0"/>'
        '<headerFooter><oddFooter>&amp;C&amp;P / &amp;N</oddFooter></headerFooter>'
        "</worksheet>")


_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<styleSheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    '<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm"/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="等线"/><family val="2"/><charset val="134"/></font>'
    '<font><b/><sz val="11"/><name val="等线"/><family val="2"/><charset val="134"/></font></fonts>'
    '<fills count="4"><fill><patternFill patternType="none"/></fill><fill><patternFill patternType="gray125"/></fill>'
    '<fill><patternFill patternType="solid"><fgColor rgb="FFD9E1F2"/><bgColor indexed="64"/></patternFill></fill>'
    '<fill><patternFill patternType="solid"><fgColor rgb="FFFFF2CC"/><bgColor indexed="64"/></patternFill></fill>'
    '</fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="4">'
    '<xf numFmtId="49" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="49" fontId="1" fillId="2" borderId="0" xfId="0" applyNumberFormat="1" applyFont="1" '
    'applyFill="1" applyAlignment="1"><alignment horizontal="center" vertical="center" wrapText="1"/></xf>'
    '<xf numFmtId="49" fontId="0" fillId="3" borderId="0" xfId="0" applyNumberFormat="1" applyFill="1" '
    'applyProtection="1"><protection locked="0"/></xf>'
    '<xf numFmtId="164" fontId="0" fillId="3" borderId="0" xfId="0" applyNumberFormat="1" applyFill="1" '
    'applyProtection="1"><protection locked="0"/></xf>'
    '</cellXfs>'
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    '</styleSheet>')

_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/xl/workbook.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
    '<Override PartName="/xl/worksheets/sheet1.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
    '<Override PartName="/xl/styles.xml" '
    'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>'
    '<Override PartName="/docProps/core.xml" '
    'ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
    '</Types>')

_ROOT_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
    'officeDocument" Target="xl/workbook.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/'
    'core-properties" Target="docProps/core.xml"/>'
    '</Relationships>')

_WORKBOOK_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" '
    'Target="worksheets/sheet1.xml"/>'
    '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/styles" '
    'Target="styles.xml"/>'
    '</Relationships>')


def _workbook_xml(spec: SheetSpec, rows: int) -> str:
    sheet = "'" + spec.name.replace("'", "''") + "'"
    last = f"${column_letter(len(spec.headers) - 1)}${rows + 1}"
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
        f'<sheets><sheet name={quoteattr(spec.name)} sheetId="1" r:id="rId1"/></sheets>'
        "<definedNames>"
        f'<definedName name="_xlnm._FilterDatabase" localSheetId="0" hidden="1">{escape(sheet)}!$A$1:{last}'
        "</definedName>"
        f'<definedName name="_xlnm.Print_Titles" localSheetId="0">{escape(sheet)}!$1:$1</definedName>'
        "</definedNames></workbook>")


def _core_xml(title: str, created: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<dc:title>{escape(title)}</dc:title><dc:creator>trace24</dc:creator>"
        f'<dcterms:created xsi:type="dcterms:W3CDTF">{created}</dcterms:created>'
        f'<dcterms:modified xsi:type="dcterms:W3CDTF">{created}</dcterms:modified>'
        "</cp:coreProperties>")


def write_workbook(path: Path, spec: SheetSpec, body: str, rows: int, widths: Sequence[int], title: str,
                   created: str) -> str:
    """Write the workbook (``body``: the rows from ``row_xml_sql``, joined) beside ``path`` and rename
    it into place; return its SHA-256. ``created`` (W3C date-time) is the run's as-of, never the
    clock, so the same run writes the same bytes."""
    if len(spec.styles) != len(spec.headers) or len(widths) != len(spec.headers):
        raise ValueError("a sheet needs one style and one width per header")
    parts = (("[Content_Types].xml", _CONTENT_TYPES), ("_rels/.rels", _ROOT_RELS),
             ("docProps/core.xml", _core_xml(title, created)), ("xl/workbook.xml", _workbook_xml(spec, rows)),
             ("xl/_rels/workbook.xml.rels", _WORKBOOK_RELS), ("xl/styles.xml", _STYLES),
             ("xl/worksheets/sheet1.xml", _sheet_xml(spec, body, rows, widths)))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name, text in parts:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type, info.external_attr = zipfile.ZIP_DEFLATED, 0o600 << 16
            archive.writestr(info, text.encode("utf-8"), compresslevel=1)
    os.replace(partial, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()
