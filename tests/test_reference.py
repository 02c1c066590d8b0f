"""The committed reference results and the README's tables regenerate byte for byte."""

from pathlib import Path

import pytest

from twolayer.cli import main

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "results" / "reference"
GENERATED = ("summary.csv", "comparison.csv", "devices.csv", "report.md")  # the charts depend on matplotlib's version


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.name for p in REFERENCE.iterdir() if (p / "benchmarks.json").is_file()))
def test_reference_reports_regenerate_byte_for_byte(tmp_path, capsys, name):
    assert main(["report", str(REFERENCE / name / "benchmarks.json"), "--out", str(tmp_path)]) == 0
    for file in GENERATED:
        assert (tmp_path / file).read_bytes() == (REFERENCE / name / file).read_bytes(), f"{name}/{file}"
    capsys.readouterr()


@pytest.mark.slow
def test_readme_tables_are_generated_from_the_reference_run(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_bytes((ROOT / "README.md").read_bytes())
    out = tmp_path / "results" / "reference" / "cpu-2core"
    assert main(["report", str(REFERENCE / "cpu-2core" / "benchmarks.json"), "--out", str(out),
                 "--readme", str(readme)]) == 0
    assert readme.read_bytes() == (ROOT / "README.md").read_bytes()
    capsys.readouterr()
