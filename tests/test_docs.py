"""The documentation as a promise: the site builds strictly (a broken link, a missing page or a
reference to a name that no longer exists fails), the README stays short, and every measured table
says how it was measured."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_site_builds_strictly(tmp_path):
    mkdocs = pathlib.Path(sys.executable).with_name("mkdocs")
    done = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "api" / "index.html").read_text().count("tl_keras.api.train") >= 1


def test_the_readme_is_read_in_five_minutes_and_keeps_its_set_up_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert 'pip install -e ".[demo,test]" && tl-keras demo' in readme and "python -m pytest -q" in readme
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install -e ".[demo,test]"' in ci and "python -m pytest -q" in ci


def test_every_measured_table_in_the_docs_names_its_command_commit_and_date():
    for page in (ROOT / "docs" / "benchmarks").glob("*.md"):
        lines = page.read_text().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("|") and (i + 1 == len(lines) or not lines[i + 1].startswith("|")):
                # the line after the table (past one blank) says how it was measured
                after = next((x for x in lines[i + 1:i + 3] if x.strip()), "")
                if page.name != "index.md":
                    assert re.match(r"\*Measured: .*commit `[0-9a-f]{7}` \(\d{4}-\d\d-\d\d\); machine: ", after), (page.name, i)
