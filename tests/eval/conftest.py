"""A tiny checkpoint and its bundle (fp32, fp16, int8 in both flavours) for the eval tests."""
import pytest


@pytest.fixture(scope="session")
def ev_ckpt(make_tiny_checkpoint):
    return make_tiny_checkpoint("tsn_tinycnn", seed=1)


@pytest.fixture(scope="session")
def ev_bundle(tmp_path_factory, ev_ckpt, motiondigits):
    from edgevt.export.exporter import ExportConfig, export_bundle

    root = tmp_path_factory.mktemp("evbundle")
    cfg = ExportConfig(precisions=("fp32", "fp16", "int8"), calib=motiondigits / "target" / "train", flavour="auto",
                       calib_clips=6, calib_cache=root / "cache", adaround_steps=0)
    return export_bundle(ev_ckpt, root / "bundle", cfg)
