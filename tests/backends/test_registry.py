import pytest

from edgevt.backends import available_backends, backend_names, open_backend
from edgevt.errors import EdgevtError

EXPECTED = {"torch", "ort-cpu", "ort-cuda", "ort-trt"}


def test_every_backend_is_listed_with_a_reason():
    names = set(backend_names())
    assert EXPECTED <= names
    for name, ok, reason in available_backends():
        assert isinstance(ok, bool) and reason, name
    usable = {n for n, ok, _ in available_backends() if ok}
    assert {"torch", "ort-cpu"} <= usable  # the base install runs these everywhere


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(EdgevtError, match="unknown backend 'nope'.*ort-cpu"):
        open_backend("nope", "x.onnx")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_opening_an_unusable_backend_names_what_to_install(name, tiny_onnx):
    ok, reason = {n: (o, r) for n, o, r in available_backends()}[name]
    if ok:
        pytest.skip(f"{name} is usable on this machine")
    with pytest.raises(EdgevtError) as e:
        open_backend(name, tiny_onnx)
    msg = str(e.value)
    assert "\n" not in msg and name in msg and reason in msg
    assert "pip install" in msg or "no CUDA device" in msg


def test_info_lists_backends():
    from typer.testing import CliRunner

    from edgevt.cli import app

    res = CliRunner().invoke(app, ["info", "--json"])
    assert res.exit_code == 0, res.output
    import json

    backends = json.loads(res.output)["backends"]
    assert EXPECTED <= set(backends)
    assert backends["ort-cpu"]["usable"] is True
