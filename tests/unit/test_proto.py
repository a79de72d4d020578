"""The committed Python bindings are what scripts/gen-proto makes of job.proto today."""

import shutil
import subprocess
from pathlib import Path

import pytest

from kafka2sidekiq._proto import job_pb2

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("protoc") is None, reason="protoc (protobuf-compiler) not installed")
def test_committed_bindings_match_the_schema(tmp_path):
    subprocess.run(["protoc", f"-I{REPO / 'src' / 'kafka2sidekiq' / 'proto'}", f"--python_out={tmp_path}",
                    "kafka2sidekiq/v1/job.proto"], check=True, cwd=REPO)
    fresh = (tmp_path / "kafka2sidekiq" / "v1" / "job_pb2.py").read_text()
    committed = (REPO / "src" / "kafka2sidekiq" / "_proto" / "job_pb2.py").read_text()
    assert fresh == committed, "job.proto changed: run scripts/gen-proto and commit the result"


def test_field_numbers_are_the_ones_the_encoders_read():
    from kafka2sidekiq._encoder_py import _FIELDS
    numbers = {f.name: f.number for f in job_pb2.Job.DESCRIPTOR.fields}
    assert numbers == {name: number for number, (name, _) in _FIELDS.items()}
