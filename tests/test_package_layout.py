"""The model package that ships as remote code imports nothing from conversion, training or inference."""

import ast

from .conftest import REPO


MODEL_MODULES = {
    "augmentation_meamtm", "configuration_meamtm", "feature_extraction_meamtm", "frontend_meamtm", "modeling_meamtm",
}


def imports_of(path) -> list[tuple[int, str]]:
    """(relative level, module) of every import statement in a file, nested ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.append((node.level, node.module or ""))
        elif isinstance(node, ast.Import):
            found += [(0, alias.name) for alias in node.names]
    return found


def test_model_modules_import_only_each_other_and_third_party_packages():
    for name in MODEL_MODULES:
        for level, module in imports_of(REPO / "meamtm" / f"{name}.py"):
            if level:
                assert level == 1 and module in MODEL_MODULES, f"{name}.py imports .{module}"
            else:
                assert module.split(".")[0] != "meamtm", f"{name}.py imports {module}"


def test_the_model_package_holds_only_the_model_and_thin_entry_points():
    top_level = {path.stem for path in (REPO / "meamtm").glob("*.py")}
    assert top_level - MODEL_MODULES <= {"__init__", "predict", "demo", "audio_io"}
    for folder in ("convert", "training", "inference"):
        assert (REPO / "meamtm" / folder / "__init__.py").is_file()
