"""The compiled encoder built with AddressSanitizer passes the golden tests and the bulk
of the differential ones: no read or write outside its buffers (the page-read trick is
off under the sanitizer), on the inputs that exercise every checker. Builds its own copy
of the package (about 30 s of compiling), so it runs once, here."""

import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from kafka2sidekiq import encoder
from conftest import REPO

pytestmark = pytest.mark.skipif(encoder._encoder_c is None or shutil.which("gcc") is None,
                                reason="compiled encoder or gcc missing")

TESTS = ["tests/unit/test_encoder_golden.py", "tests/unit/test_encoder_differential.py", "-k",
         "golden or bulk or strings_ending or many_keys or names_of_every or byte_bounded or milliseconds"]


def test_golden_and_differential_under_addresssanitizer(tmp_path):
    libasan = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True, text=True).stdout.strip()
    if not os.path.isabs(libasan):
        pytest.skip("gcc has no libasan")
    # pip builds the wheel as a release is built (setuptools and Cython of the build
    # requirements), with the sanitizer switched on by setup.py's knob
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
                           env={**os.environ, "K2S_SANITIZE": "address"}, capture_output=True, text=True,
                           timeout=900)
    assert build.returncode == 0, build.stderr[-3000:]
    package = tmp_path / "site" / "kafka2sidekiq"
    shutil.copytree(REPO / "src" / "kafka2sidekiq", package, ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    (wheel,) = tmp_path.glob("kafka2sidekiq-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.startswith("kafka2sidekiq/_encoder_c") and n.endswith(".so")]
        (package / name.rsplit("/", 1)[1]).write_bytes(archive.read(name))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site"), "LD_PRELOAD": libasan,
           "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1", "K2S_REQUIRE_COMPILED": "1"}
    loaded = subprocess.run([sys.executable, "-c", "import kafka2sidekiq._encoder_c as e; print(e.__file__)"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert loaded.stdout.startswith(str(package)), loaded.stdout + loaded.stderr[-2000:]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], env=env,
                         cwd=REPO, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0 and "AddressSanitizer" not in run.stderr, (run.stdout + run.stderr)[-5000:]
