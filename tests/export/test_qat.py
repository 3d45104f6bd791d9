"""Quantization-aware fine-tuning (edgevt.export.qat) and --qat-steps in the export path."""
import numpy as np
import pytest
import torch

from edgevt.errors import EdgevtError
from edgevt.export import qat as Q


def test_pairs_and_taps_follow_the_graph(small_net):
    net = small_net()
    pairs, activated = Q.conv_batchnorm_pairs(net, torch.randn(1, 3, 8, 8))
    blocks = [net[3], net[4]]
    assert pairs == {net[0]: net[1], **{b.conv1: b.bn1 for b in blocks}, **{b.conv2: b.bn2 for b in blocks}}
    assert activated == {net[1], blocks[0].bn1, blocks[1].bn1}  # bn2 feeds the residual add, not an activation
    taps = Q.rounding_taps(net, activated)
    assert sorted(taps) == sorted(["0:in", "3.conv1:in", "3.conv2:in", "4.conv1:in", "4.conv2:in",
                                   "3.bn2:out", "4.bn2:out"])


def test_rounded_weight_is_on_the_folded_int8_grid_and_stays_there(small_net):
    net = small_net()
    conv, bn = net[3].conv1, net[3].bn1
    fold = Q._bn_scale(bn, conv.weight.shape[0])
    torch.nn.utils.parametrize.register_parametrization(conv, "weight", Q.FoldedWeightQuant(fold))
    with torch.no_grad():  # the stored tensor is the folded weight
        conv.parametrizations.weight.original.add_(1e-3)
    torch.nn.utils.parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)
    folded = (conv.weight * fold.view(-1, 1, 1, 1)).detach().numpy()
    scale = np.abs(folded).reshape(len(folded), -1).max(axis=1) / 127
    q = folded / scale.reshape(-1, 1, 1, 1)
    assert np.abs(q - np.rint(q)).max() < 1e-3  # what the exporter's quantizer will round it to, exactly
    from edgevt.export.bias_correction import quantized_weight
    np.testing.assert_allclose(quantized_weight(folded), folded, rtol=0, atol=1e-6 * np.abs(folded).max())


def test_activation_grids_of_the_two_flavours():
    scale, zp, lo, hi = Q.activation_grid(-1.0, 3.0, "cpu")
    assert (lo, hi) == (0, 255) and scale == pytest.approx(4 / 255) and zp == round(1 / scale)
    assert Q.activation_grid(0.5, 6.0, "cpu")[1] == 0  # zero is always on the grid
    scale, zp, lo, hi = Q.activation_grid(-1.0, 3.0, "tensorrt")
    assert (zp, lo, hi) == (0, -128, 127) and scale == pytest.approx(3 / 127)
    with pytest.raises(EdgevtError, match="unknown INT8 flavour 'fp8'"):
        Q.activation_grid(0.0, 1.0, "fp8")


def test_finetuning_brings_the_simulated_int8_logits_closer_to_fp32s(small_net):
    """The point of it: on the clips it tunes on, the rounded copy's logits end nearer FP32's than the
    rounded original's; the given model is left as it was."""
    net = small_net(1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = np.random.default_rng(0).normal(size=(16, 3, 12, 12)).astype(np.float32) * 2
    tuned, rec = Q.finetune_for_int8(net, x, "cpu", Q.QATConfig(steps=60, lr=1e-3, batch=8), float_input=True)
    assert rec["simulated_logit_error_after"] < 0.7 * rec["simulated_logit_error_before"]
    assert rec["folded_batchnorms"] == 5 and rec["rounded_activations"] == 7 and rec["samples"] == 32
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert not any(torch.nn.utils.parametrize.is_parametrized(m) for m in tuned.modules())
    assert not tuned._forward_pre_hooks and all(not m._forward_hooks for m in tuned.modules())
    assert not torch.equal(tuned[3].conv1.weight, net[3].conv1.weight)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(EdgevtError, match="--qat-steps must be >= 1"):
        Q.QATConfig(steps=0).validate()
    with pytest.raises(EdgevtError, match="--qat-lr must be > 0"):
        Q.QATConfig(lr=0).validate()
    from edgevt.export.exporter import ExportConfig
    with pytest.raises(EdgevtError, match="add int8 to --precision"):
        ExportConfig(qat_steps=5).validate()
    with pytest.raises(EdgevtError, match="--qat-steps must be >= 0"):
        ExportConfig(qat_steps=-1).validate()


def test_export_with_qat_makes_the_int8_graph_from_the_tuned_copy(tmp_path, ex_ckpt, motiondigits, initializers):
    """--qat-steps: the FP32 graph is the checkpoint's (parity as usual), the INT8 graph is made from a
    tuned copy and gated against the FP32 graph; the manifest says how the tuning went."""
    from edgevt.export.exporter import ExportConfig, export_bundle

    common = dict(precisions=("fp32", "int8"), calib=motiondigits / "target" / "train", flavour="cpu",
                  eval=motiondigits / "target" / "test", max_drop=100.0, min_agreement=0.0,
                  calib_cache=tmp_path / "cache", calib_method="entropy", qat_batch=4)
    plain = export_bundle(ex_ckpt, tmp_path / "plain", ExportConfig(adaround_steps=0, **common))
    tuned = export_bundle(ex_ckpt, tmp_path / "qat", ExportConfig(qat_steps=4, qat_lr=1e-4, **common))
    qat = tuned.manifest["checks"]["int8-cpu"]["qat"]
    assert qat["steps"] == 4 and qat["flavour"] == "cpu" and qat["folded_batchnorms"] > 0
    assert "qat" not in plain.manifest["checks"]["int8-cpu"]
    assert "adaround" not in tuned.manifest["checks"]["int8-cpu"]  # --qat-steps turns the default rounding off
    assert tuned.manifest["export_config"]["qat_steps"] == 4
    # the FP32 graphs are the same model; the INT8 weights are not
    assert tuned.manifest["checks"]["parity.fp32"]["passed"]

    f_plain, f_qat = initializers(plain, "model.fp32"), initializers(tuned, "model.fp32")
    assert all(np.array_equal(f_plain[k], f_qat[k]) for k in f_plain)
    q_plain, q_qat = initializers(plain, "model.int8-cpu"), initializers(tuned, "model.int8-cpu")
    assert any(k in q_qat and q_plain[k].shape == q_qat[k].shape and not np.array_equal(q_plain[k], q_qat[k])
               for k in q_plain if q_plain[k].dtype == np.int8)
    gate = tuned.manifest["checks"]["gate.int8-cpu"]
    assert gate["passed"] and 0 <= gate["agreement"] <= 100
