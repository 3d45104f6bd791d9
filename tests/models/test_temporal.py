import torch

from edgevt.models.temporal import temporal_shift
from edgevt.models.zoo import create_model


def _reference_shift(x, t, fold_div=8):
    """The TSM paper's in-place formulation, as an independent reference."""
    nt, c, h, w = x.shape
    x = x.view(nt // t, t, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = x[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = x[:, :, 2 * fold:]
    return out.view(nt, c, h, w)


def test_shift_matches_reference():
    x = torch.randn(2 * 5, 16, 3, 3)
    torch.testing.assert_close(temporal_shift(x, 5), _reference_shift(x, 5))


def test_tsm_mixes_time_and_tsn_does_not():
    x = torch.randn(1, 4, 3, 32, 32)
    y = x.clone()
    y[:, 1] = torch.randn(3, 32, 32)  # change only frame 1 (tinycnn's two shifts reach 2 frames)
    tsn = create_model("tsn_tinycnn", 3, num_frames=4).eval()
    tsm = create_model("tsm_tinycnn", 3, num_frames=4).eval()
    with torch.no_grad():
        # TSN's frame-0 embedding is independent of frame 1; TSM's is not.
        e_tsn = [tsn.encode_frames(v.flatten(0, 1))[0] for v in (x, y)]
        e_tsm = [tsm.encode_frames(v.flatten(0, 1))[0] for v in (x, y)]
    torch.testing.assert_close(e_tsn[0], e_tsn[1])
    assert not torch.allclose(e_tsm[0], e_tsm[1])


def test_shift_inserted_in_every_residual_block():
    from edgevt.models.temporal import TemporalShift

    for name, expected in [("tsm_resnet18", 8), ("tsm_mobilenet_v2", 10), ("tsm_efficientnet_lite0", 9)]:
        model = create_model(name, 3, num_frames=4)
        assert sum(isinstance(m, TemporalShift) for m in model.modules()) == expected, name
