"""Which encoder runs, and that CI really runs the compiled one."""

import os

import pytest

from kafka2sidekiq import encoder, _encoder_py


def test_ci_loads_the_compiled_encoder():
    """Fails when the extension did not build: CI must test the code users run."""
    if not (os.environ.get("CI") or os.environ.get("K2S_REQUIRE_COMPILED")):
        pytest.skip("set CI or K2S_REQUIRE_COMPILED to require the compiled encoder")
    assert encoder._encoder_c is not None, "the compiled encoder did not build or import"
    assert encoder.select("auto") is encoder._encoder_c
    assert encoder._encoder_c.__file__.endswith(".so")


def test_python_choice_is_the_reference():
    assert encoder.select("python") is _encoder_py


def test_fast_fails_loudly_when_the_extension_is_missing(monkeypatch):
    monkeypatch.setattr(encoder, "_encoder_c", None)
    monkeypatch.setattr(encoder, "_missing", ImportError("no module named _encoder_c"), raising=False)
    with pytest.raises(encoder.EncoderUnavailable, match="K2S_ENCODER=python"):
        encoder.select("fast")
    assert encoder.select("auto") is _encoder_py


def test_unknown_choice():
    with pytest.raises(ValueError, match="auto, fast, python"):
        encoder.select("turbo")


def test_random_jids_differ_after_fork():
    """A forked child reseeds: parent and child never hand out the same jid stream."""
    from kafka2sidekiq._proto.job_pb2 import Job
    value = Job(job_class="A").SerializeToString()
    for module in {_encoder_py, encoder.select("auto")}:
        enc = module.Encoder(_encoder_py.EncoderOptions())
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            payload = enc.encode_batch("t", [(value, 0, 0, 0)], 0).queues["default"][0]
            os.write(write, payload)
            os._exit(0)
        os.waitpid(pid, 0)
        child = os.read(read, 4096)
        parent = enc.encode_batch("t", [(value, 0, 0, 0)], 0).queues["default"][0]
        os.close(read), os.close(write)
        assert child.split(b'"jid":')[1][:26] != parent.split(b'"jid":')[1][:26]
