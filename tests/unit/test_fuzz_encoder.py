"""The fuzz target (fuzz/fuzz_encoder.py): every input of its kept corpus still gives the
same result from both twins, and a short coverage-guided run finds no difference."""

import importlib.util
import subprocess
import sys

import pytest

from kafka2sidekiq import encoder
from conftest import REPO

pytestmark = pytest.mark.skipif(encoder._encoder_c is None, reason="compiled encoder not built")
atheris = pytest.importorskip("atheris")

TARGET = REPO / "fuzz" / "fuzz_encoder.py"
CORPUS = REPO / "fuzz" / "corpus"


def test_the_kept_corpus_replays_alike():
    spec = importlib.util.spec_from_file_location("fuzz_encoder", TARGET)
    target = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(target)
    inputs = sorted(CORPUS.iterdir())
    assert len(inputs) >= 50, "the corpus is kept in the repository"
    for path in inputs:
        target.one_input(path.read_bytes())


def test_a_short_fuzzing_run_finds_no_difference(tmp_path):
    run = subprocess.run([sys.executable, str(TARGET), "--seconds", "10", "--corpus", str(tmp_path), str(CORPUS)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Done " in run.stderr
