"""The README's settings table is the one the declarations make."""

from pathlib import Path

from kafka2sidekiq.config import markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_settings_table_is_generated_from_the_declarations():
    text = README.read_text()
    begin = text.index("-->", text.index("<!-- settings-table:begin")) + 3
    end = text.index("<!-- settings-table:end")
    assert text[begin:end].strip() == markdown_table(), "regenerate: python -c 'from kafka2sidekiq.config " \
                                                        "import markdown_table; print(markdown_table())'"


def test_benchmark_table_is_generated_from_the_committed_results():
    from bench import readme
    text = README.read_text()
    begin, end = readme.section(text)
    assert text[begin:end].strip() == readme.table(), "run: python -m bench.readme"


def test_every_metric_is_documented():
    from types import SimpleNamespace

    import psutil
    from prometheus_client.parser import text_string_to_metric_families

    from kafka2sidekiq.metrics import HostMetrics

    host = HostMetrics(SimpleNamespace(paused=False, pauses=0, used_memory=0),
                       lambda: [("worker", "0", psutil.Process())], lambda: {3})
    host.restarts[0] = 1
    names = {f.name + ("_total" if f.type == "counter" else "")
             for f in text_string_to_metric_families(host.exposition().decode())}
    text = README.read_text()
    assert len(names) == 21
    assert [n for n in sorted(names) if f"| `{n}" not in text] == []


def test_every_exit_code_is_documented():
    from kafka2sidekiq import cli, config, supervisor

    text = README.read_text()
    line = text[text.index("Exit codes:"):text.index("\n\n", text.index("Exit codes:"))]
    from kafka2sidekiq import exits

    codes = {cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, supervisor.EXIT_BOOT, supervisor.EXIT_CRASHLOOP,
             config.EXIT_CONFIG, exits.INVALID_JOB, exits.UNAVAILABLE, exits.REFUSED, exits.INTERRUPTED}
    assert [c for c in sorted(codes) if f"{c} " not in line] == []


def test_every_section_maps_to_tests_that_exist():
    """tests/readme-map.toml names, per README section, the tests that check its promises:
    every section is there, and every test it names exists (a renamed or deleted test fails
    here, not silently)."""
    import ast
    import re
    import tomllib

    root = README.parent
    sections = tomllib.loads((root / "tests" / "readme-map.toml").read_text())
    headings = re.findall(r"^#{2,3} (.+)$", README.read_text(), re.M)
    assert [h for h in headings if h not in sections] == [], "add these sections to tests/readme-map.toml"
    assert [s for s in sections if s not in headings] == [], "these sections are no longer in the README"
    defined: dict[str, set[str]] = {}
    missing = []
    for promises in sections.values():
        for tests in promises.values():
            for node in tests:
                path, name = node.split("::")
                if path not in defined:
                    file = root / path
                    tree = ast.parse(file.read_text()) if file.exists() else ast.Module(body=[], type_ignores=[])
                    defined[path] = {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}
                if name not in defined[path]:
                    missing.append(node)
    assert missing == []
