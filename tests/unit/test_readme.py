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


def test_benchmark_figures_match_the_committed_results():
    import json
    results = README.parent / "bench" / "results"
    text = README.read_text()
    e2e = json.loads((results / "e2e.json").read_text())
    enc = json.loads((results / "encoder.json").read_text())
    for figure in (f"{e2e['jobs_per_second_median']['kafka2sidekiq']:,}", f"{e2e['kafka2sidekiq_over_baseline']}x",
                   f"{enc['results']['small']['ns_per_job_median']['compiled']}",
                   f"{enc['results']['small']['baseline_over_compiled']}x"):
        assert figure in text, f"README figure {figure} is not the committed result: update the README"
