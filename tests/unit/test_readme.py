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
