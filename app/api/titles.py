"""Column titles of downloads and report sheets, in one place: Vietnamese first, English with `lang=en`.

A column is named by its JSON path (`unit.code`, `kpis.on_time_rate`); its title joins the title of
the block it sits in (`unit` -> "Đơn vị") and that of its field. KPI titles (Vietnamese and English) are
those of the registry `app.scoring.kpis.KPIS`, so a KPI added there is titled here.
"""

from __future__ import annotations

from app.scoring.kpis import KPI

LANGS = ("vi", "en", "key")

# field or block name: (Vietnamese, English)
FIELDS: dict[str, tuple[str, str]] = {
    "unit": ("Đơn vị", "Unit"),
    "kpis": ("", ""),
    "change": ("Thay đổi", "Change"),
    "previous": ("Kỳ trước", "Previous"),
    "code": ("Mã", "Code"),
    "name": ("Tên", "Name"),
    "level": ("Cấp", "Level"),
    "kind": ("Loại", "Kind"),
    "parent": ("Mã đơn vị cấp trên", "Parent code"),
    "parents": ("Cấp trên", "Parents"),
    "rank": ("Hạng", "Rank"),
    "previous_rank": ("Hạng kỳ trước", "Previous rank"),
    "kpi": ("Chỉ tiêu", "KPI"),
    "value": ("Giá trị", "Value"),
    "previous_value": ("Giá trị kỳ trước", "Previous value"),
    "start": ("Từ ngày", "Start"),
    "end": ("Đến ngày (không gồm)", "End (exclusive)"),
    "sector": ("Lĩnh vực", "Sector"),
    "dossier_id": ("Mã hồ sơ", "Dossier id"),
    "received_at": ("Thời điểm tiếp nhận", "Received at"),
    "due_at": ("Hạn giải quyết", "Due at"),
    "hours_left": ("Số giờ còn lại", "Hours left"),
    "overdue": ("Quá hạn", "Overdue"),
    "channel": ("Kênh nộp", "Channel"),
    "procedure_code": ("Mã thủ tục", "Procedure code"),
    "last_event_at": ("Lần nhận dữ liệu cuối", "Last event accepted at"),
    "silent_hours": ("Số giờ không gửi", "Hours silent"),
    "own": ("Hồ sơ của chính đơn vị", "Unit's own dossiers"),
    "numerator": ("Tử số", "Numerator"),
    "denominator": ("Mẫu số", "Denominator"),
    "previous_numerator": ("Tử số kỳ trước", "Previous numerator"),
    "previous_denominator": ("Mẫu số kỳ trước", "Previous denominator"),
    "contribution": ("Đóng góp vào thay đổi", "Contribution to the change"),
    "count": ("Số hồ sơ", "Dossiers"),
}

# the second sheet's labels and the tables' names
LABELS: dict[str, tuple[str, str]] = {
    "about": ("Về bảng này", "About this table"),
    "table": ("Bảng", "Table"),
    "period": ("Kỳ", "Period"),
    "previous_period": ("Kỳ trước", "Previous period"),
    "until": ("tính đến cùng thời điểm", "up to the same point"),
    "as_of": ("Số liệu tính đến", "Figures as of"),
    "request": ("Yêu cầu", "Request"),
    "times": ("Thời gian", "Times"),
    "times_note": ("Giờ địa phương (múi giờ của as_of)", "Local time (the offset of as_of)"),
    "columns": ("Các cột", "Columns"),
    "units": ("Danh mục đơn vị", "Units"),
    "unit": ("Đơn vị", "Unit"),
    "kpis": ("Chỉ tiêu", "KPIs"),
    "ranking": ("Xếp hạng", "Ranking"),
    "series": ("Chuỗi thời gian", "Series"),
    "sectors": ("Theo lĩnh vực", "Sectors"),
    "at-risk": ("Hồ sơ sắp đến hạn", "Due soon"),
    "silent": ("Đơn vị ngừng gửi dữ liệu", "Silent units"),
    "drivers": ("Vì sao thay đổi", "Drivers"),
    "summary": ("Tổng hợp", "Summary"),
    "due_soon": ("Sắp đến hạn", "Due soon"),
    "due_units": ("Đơn vị nhiều hồ sơ sắp đến hạn", "Units with most due soon"),
    "report": ("Báo cáo", "Report"),
}


def kpi_title(name: str, lang: str) -> str:
    if lang == "key":
        return name
    kpi = KPI.get(name)
    if kpi is None:
        return name
    return kpi.en if lang == "en" else kpi.vi


def label(key: str, lang: str) -> str:
    vi, en = LABELS.get(key, (key, key))
    return en if lang == "en" else vi


def title(path: str, lang: str) -> str:
    """The header of the column at JSON `path` in `lang` (`key`: the path itself)."""
    if lang == "key":
        return path
    parts = path.split(".")
    words = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if last and (part in KPI) and (len(parts) > 1 or part not in FIELDS):
            words.append(kpi_title(part, lang))
        elif part in FIELDS:
            vi, en = FIELDS[part]
            words.append(en if lang == "en" else vi)
        else:
            words.append(part)
    return " – ".join(w for w in words if w)
