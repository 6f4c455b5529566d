"""scripts/render_results.py: the README's results section is exactly what the committed result files say."""

import importlib.util
import json

import pytest

from .conftest import REPO


spec = importlib.util.spec_from_file_location("render_results", REPO / "scripts" / "render_results.py")
render_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render_results)


def entry(title, order, rows):
    return {"readme": {"order": order, "title": title, "script": "scripts/x.py", "command": "python scripts/x.py",
                       "machine": "2-core VM", "date": "day one", "columns": ["run", "value"], "rows": rows}}


def test_the_committed_readme_matches_the_committed_result_files():
    assert render_results.main(["--check"]) == 0


def test_tables_follow_their_order_and_name_machine_date_command_and_file(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "b.json").write_text(json.dumps(entry("Second", 20, [["x", 1]])))
    (results / "a.json").write_text(json.dumps(entry("First", 10, [["y", "2.0 %"]])))
    (results / "raw.json").write_text(json.dumps({"no": "readme entry"}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{render_results.START}\nstale\n{render_results.END}\noutro\n")
    assert render_results.main(["--results_dir", str(results), "--readme", str(readme), "--check"]) == 1
    assert render_results.main(["--results_dir", str(results), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.index("### First") < text.index("### Second") and "stale" not in text
    assert "2-core VM, day one; `python scripts/x.py` -> [results/a.json](results/a.json)" in text
    assert "| y | 2.0 % |" in text and text.startswith("intro\n") and text.endswith("outro\n")
    assert render_results.main(["--results_dir", str(results), "--readme", str(readme), "--check"]) == 0


def test_an_incomplete_entry_or_a_ragged_row_is_refused(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"readme": {"title": "t"}}))
    with pytest.raises(ValueError, match="lacks"):
        render_results.render(tmp_path, tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps(entry("t", 1, [["only one cell"]])))
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        render_results.render(tmp_path, tmp_path)
