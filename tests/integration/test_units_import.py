"""`chiso units import FILE.csv` amends or replaces the registry; bad files are refused by line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.units.seed import CsvError, read_csv


def _cli(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "units", "import", *args], env={**os.environ, "DATABASE_URL": url}, capture_output=True, text=True
    )


class TestCsv:
    @pytest.mark.parametrize(
        "content,problem",
        [
            ("code,name\n", "header lacks kind, parent_code"),
            ("code,name,kind,parent_code\n123,X,xa,46\n", "line 2: code '123'"),
            ("code,name,kind,parent_code\n99998,X,hamlet,46\n", "line 2: kind must be"),
            ("code,name,kind,parent_code\n99998,X,xa,VN\n", "line 2: a commune's parent_code"),
            ("code,name,kind,parent_code\n99,,,VN\n", "line 2: name is empty"),
        ],
    )
    def test_bad_files_name_the_line(self, tmp_path, content, problem):
        f = tmp_path / "units.csv"
        f.write_text(content)
        with pytest.raises(CsvError, match=problem):
            read_csv(f)


@pytest.mark.slow
class TestImport:
    async def test_amend_then_replace(self, fresh_service, tmp_path):
        svc = fresh_service
        f = tmp_path / "amend.csv"
        f.write_text("code,name,kind,parent_code\n19777,Xã Mới Đổi Tên,xa,46\n99998,Phường Thử Nghiệm,phuong,46\n", encoding="utf-8")
        result = _cli(svc.url, str(f))
        assert result.returncode == 0, result.stderr
        await svc.app.state.registry.refresh()
        token = await svc.key("read")
        assert (await svc.get("/api/v1/units/19777", token)).json()["name"] == "Xã Mới Đổi Tên"
        assert (await svc.get("/api/v1/units/99998", token)).json()["kind"] == "phuong"
        assert (await svc.get("/api/v1/units", token, level="commune")).json()["total"] == 3322

        f.write_text("code,name,kind,parent_code\n46,Thành phố Huế,,VN\n99998,Phường Thử Nghiệm,phuong,46\n", encoding="utf-8")
        assert _cli(svc.url, str(f), "--replace").returncode == 0
        await svc.app.state.registry.refresh()
        units = (await svc.get("/api/v1/units", token, limit=5000)).json()
        assert [u["code"] for u in units["items"]] == ["46", "99998", "VN"]

    async def test_a_bad_file_changes_nothing(self, fresh_service, tmp_path):
        f = tmp_path / "bad.csv"
        f.write_text("code,name,kind,parent_code\n19777,Renamed,xa,46\n12,Broken,,XX\n")
        result = _cli(fresh_service.url, str(f))
        assert result.returncode == 2 and "line 3" in result.stderr
        await fresh_service.app.state.registry.refresh()
        body = (await fresh_service.get("/api/v1/units/19777", await fresh_service.key("read"))).json()
        assert body["name"] != "Renamed"
