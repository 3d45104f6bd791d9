"""Adaptive rounding of the INT8 weights (edgevt.export.adaround) and --adaround-steps in the export path."""
import numpy as np
import pytest
import torch
from torch import nn

from edgevt.errors import EdgevtError
from edgevt.export import adaround as A
from edgevt.export import qat as Q


def folded_weights(net):
    pairs, _ = Q.conv_batchnorm_pairs(net, torch.randn(1, 3, 8, 8))
    out = {}
    for name, m in net.named_modules():
        if isinstance(m, Q.CONVS):
            f = Q._bn_scale(pairs.get(m), m.weight.shape[0]).view(-1, 1, 1, 1)
            out[name] = (m.weight * f).detach().numpy()
    return out


def test_one_layer_adaptive_rounding_beats_nearest_on_its_inputs():
    """The layer-wise problem itself: on a conv's calibration inputs the chosen rounding reproduces the
    float output better than rounding every weight to its nearest level. The inputs are correlated
    across channels and space with a non-zero mean, as activations are (on white noise the nearest
    level is already the best choice per weight, and there is nothing to gain)."""
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1, bias=False)
    low = torch.einsum("nkhw,kc->nchw", torch.randn(64, 2, 3, 3), torch.randn(2, 8))
    x = nn.functional.interpolate(low, size=(6, 6), mode="bilinear") + 0.05 * torch.randn(64, 8, 6, 6) + 1.0
    with torch.no_grad():
        target = conv(x)
    rec = A.round_layer(conv, torch.ones(8), x, target, "cpu", A.AdaRoundConfig(steps=300, batch=32),
                        torch.Generator().manual_seed(0))
    assert rec["kept"] and rec["adaptive"] < 0.5 * rec["nearest"]
    assert 0 < rec["changed"] < 0.5  # a minority of the weights differ from their nearest level


def test_adaround_lowers_the_simulated_int8_error_and_leaves_weights_on_the_grid(small_net):
    net = small_net(1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = np.random.default_rng(0).normal(size=(16, 3, 12, 12)).astype(np.float32) * 2
    tuned, rec = A.adaround_for_int8(net, x, "cpu", A.AdaRoundConfig(steps=200, batch=16, clips=16))
    assert rec["method"] == "adaround" and rec["convolutions"] == 5 and rec["kept"] >= 1
    assert rec["simulated_logit_error_after"] < 0.9 * rec["simulated_logit_error_before"]
    assert all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())  # the model given is untouched
    assert not tuned._forward_pre_hooks and all(not m._forward_hooks for m in tuned.modules())
    from edgevt.export.bias_correction import quantized_weight
    orig, got = folded_weights(net), folded_weights(tuned)
    for name, w in got.items():  # on the int8 grid the exporter's quantizer recomputes: it rounds them to themselves
        np.testing.assert_allclose(quantized_weight(w), w, rtol=0, atol=1e-5 * np.abs(w).max())
        # each channel's peak weight kept its level, so the scale is the nearest rounding's
        np.testing.assert_allclose(np.abs(w).reshape(len(w), -1).max(1),
                                   np.abs(orig[name]).reshape(len(w), -1).max(1), rtol=1e-5)


def layer_by_layer(net, x, config):
    """The rounding as the first version computed it, as a reference: for each convolution two
    forward passes from the start (the student's input to it, with the convolutions before it rounded
    and the activations rounded; the FP32 model's output of it), then ``round_layer``."""
    teacher, student, x_all, g = Q.start_tuning(net, x, "cpu", config, "ref")
    xs = x_all[np.linspace(0, len(x_all) - 1, min(config.clips, len(x_all))).round().astype(int)]
    order = A.conv_order(student, xs[:1])
    pairs, activated = Q.conv_batchnorm_pairs(student, xs[:1])
    taps = Q.rounding_taps(student, activated)
    ranges = Q.observe_ranges(student, taps, (x_all[i:i + 4] for i in range(0, len(x_all), 4)))
    names = {m: n for n, m in student.named_modules()}
    twin = dict(teacher.named_modules())
    for p in student.parameters():
        p.requires_grad_(False)

    def grab(model, module, pre):
        got = []
        h = (module.register_forward_pre_hook(lambda _m, i: got.append(i[0].clone())) if pre else
             module.register_forward_hook(lambda _m, _i, o: got.append(o.clone())))
        with torch.no_grad():
            for i in range(0, len(xs), 4):
                model(xs[i:i + 4])
        h.remove()
        return torch.cat(got)

    hooks = Q.activation_hooks(student, taps, ranges, "cpu")
    for conv in order:
        tconv = twin[names[conv]]
        target = grab(teacher, tconv, False)
        if tconv.bias is not None:
            target = target - tconv.bias.detach().view(1, -1, 1, 1)
        A.round_layer(conv, Q._bn_scale(pairs.get(conv), conv.weight.shape[0]), grab(student, conv, True), target,
                      "cpu", config, g)
    for h in hooks:
        h.remove()
    return student


@pytest.mark.parametrize("budget", [1 << 30, 1])
def test_one_pass_rounds_as_layer_by_layer_passes_do(small_net, monkeypatch, budget):
    """Each convolution is rounded in a pre-hook of one forward pass over all the clips, with the
    FP32 model's outputs captured in runs of layers (``TARGET_BYTES``; 1 byte: one pass per layer).
    That must choose the same roundings as two passes from the start per layer (the first version:
    most of its time on the 224x224 Lite0 went to those passes, not to the rounding itself)."""
    monkeypatch.setattr(A, "TARGET_BYTES", budget)
    net = small_net(3)
    x = np.random.default_rng(3).normal(size=(12, 3, 12, 12)).astype(np.float32) * 2
    config = A.AdaRoundConfig(steps=40, batch=8, clips=12)
    tuned, rec = A.adaround_for_int8(net, x, "cpu", config)
    ref = layer_by_layer(net, x, config)
    assert rec["convolutions"] == 5
    for (name, w), (_, r) in zip(folded_weights(tuned).items(), folded_weights(ref).items()):
        np.testing.assert_allclose(w, r, rtol=0, atol=1e-6 * np.abs(r).max(), err_msg=name)


def test_groups_are_consecutive_runs_within_the_budget():
    assert A._groups([3, 3, 3, 5, 1], 6) == [range(0, 2), range(2, 3), range(3, 5)]
    assert A._groups([10, 1], 4) == [range(0, 1), range(1, 2)]  # a layer over the budget runs alone
    assert A._groups([], 4) == []


def test_convs_the_tensorrt_flavour_keeps_in_float_keep_their_float_weights(small_net):
    """--flavour tensorrt keeps 3-input-channel convs out of INT8: rounding their weights would only
    add error to a layer that runs in float."""
    net = small_net(2)
    x = np.random.default_rng(1).normal(size=(8, 3, 12, 12)).astype(np.float32)
    tuned, rec = A.adaround_for_int8(net, x, "tensorrt", A.AdaRoundConfig(steps=20, clips=8), keep_rgb_convs=True)
    assert rec["convolutions"] == 4 and "0" not in rec["layer_error"] and rec["rgb_convs_left_float"]
    assert torch.equal(tuned[0].weight, net[0].weight)
    assert not torch.equal(tuned[3].conv1.weight, net[3].conv1.weight)


def test_tensorrt_flavour_uses_fp16_scales():
    w = torch.tensor([[0.3], [1e-3]]).view(2, 1, 1, 1) * 1.2345
    s = A.weight_grid(w, "tensorrt")
    assert torch.equal(s, s.half().float()) and not torch.equal(A.weight_grid(w, "cpu"), s)


def test_bad_settings_are_one_line_errors(small_net):
    with pytest.raises(EdgevtError, match="--adaround-steps must be >= 1"):
        A.AdaRoundConfig(steps=0).validate()
    with pytest.raises(EdgevtError, match="--adaround-lr must be > 0"):
        A.AdaRoundConfig(lr=0).validate()
    with pytest.raises(EdgevtError, match="--adaround-clips must be >= 1"):
        A.AdaRoundConfig(clips=0).validate()
    from edgevt.export.exporter import ExportConfig
    with pytest.raises(EdgevtError, match="add int8 to --precision"):
        ExportConfig(adaround_steps=5).validate()
    with pytest.raises(EdgevtError, match="--adaround-steps must be >= 0"):
        ExportConfig(adaround_steps=-1).validate()
    with pytest.raises(EdgevtError, match="choose one"):
        ExportConfig(precisions=("fp32", "int8"), calib="x", flavour="cpu", adaround_steps=5, qat_steps=5).validate()
    with pytest.raises(EdgevtError, match="unknown INT8 flavour"):
        A.adaround_for_int8(small_net(), np.zeros((2, 3, 8, 8), np.float32), "fp8")


def test_int8_exports_round_adaptively_unless_told_otherwise():
    """The default (adaround_steps None): DEFAULT_STEPS when int8 is exported without --qat-steps; off
    without int8 or with --qat-steps (neither is an error, as it is when --adaround-steps is given)."""
    from edgevt.export.exporter import ExportConfig

    int8 = dict(precisions=("fp32", "int8"), calib="x")
    assert ExportConfig(**int8).adaround_steps_used() == A.DEFAULT_STEPS == 300
    assert ExportConfig(**int8).tuning() == "adaround" and ExportConfig(**int8).adaround().steps == 300
    assert ExportConfig(adaround_steps=0, **int8).adaround_steps_used() == 0
    assert ExportConfig(adaround_steps=0, **int8).tuning() is None
    assert ExportConfig(adaround_steps=7, **int8).adaround_steps_used() == 7
    assert ExportConfig(qat_steps=5, **int8).tuning() == "qat"
    assert ExportConfig(qat_steps=5, **int8).adaround_steps_used() == 0
    assert ExportConfig(precisions=("fp32", "fp16")).adaround_steps_used() == 0
    for cfg in (ExportConfig(**int8), ExportConfig(qat_steps=5, **int8), ExportConfig(precisions=("fp32",))):
        cfg.validate()
    with pytest.raises(EdgevtError, match="--adaround-batch must be >= 1"):
        ExportConfig(adaround_batch=0, **int8).validate()  # the default's settings are checked too


def test_a_default_int8_export_records_the_rounding(ex_bundle):
    """ex_bundle is exported with ExportConfig's defaults for the rounding: both flavours' INT8 graphs
    come from a rounded copy, and the manifest says so, with the steps the default stood for."""
    checks = ex_bundle.manifest["checks"]
    for key in ("int8-cpu", "int8"):  # the cpu and tensorrt flavours' stored keys
        ada = checks[key]["adaround"]
        assert ada["steps"] == A.DEFAULT_STEPS and ada["convolutions"] > 0
    assert ex_bundle.manifest["export_config"]["adaround_steps"] == A.DEFAULT_STEPS


def assert_int8_from_the_rounded_copy(initializers, plain, rounded, role):
    """``role``'s FP32 graph is the checkpoint's in both bundles; its CPU INT8 graph's int8 weights
    differ from the plain export's somewhere (they come from the rounded copy)."""
    f_plain, f_ada = initializers(plain, f"{role}.fp32"), initializers(rounded, f"{role}.fp32")
    assert all(np.array_equal(f_plain[k], f_ada[k]) for k in f_plain)
    q_plain, q_ada = initializers(plain, f"{role}.int8-cpu"), initializers(rounded, f"{role}.int8-cpu")
    assert any(k in q_ada and q_plain[k].shape == q_ada[k].shape and not np.array_equal(q_plain[k], q_ada[k])
               for k in q_plain if q_plain[k].dtype == np.int8)


def test_export_with_adaround_makes_the_int8_graph_from_the_rounded_copy(tmp_path, ex_ckpt, motiondigits, initializers):
    """--adaround-steps: the FP32 graph is the checkpoint's, the INT8 graph's weights are the rounded
    copy's and it is gated against the FP32 graph; the manifest says how the rounding went."""
    from edgevt.export.exporter import ExportConfig, export_bundle

    common = dict(precisions=("fp32", "int8"), calib=motiondigits / "target" / "train", flavour="cpu",
                  eval=motiondigits / "target" / "test", max_drop=100.0, min_agreement=0.0,
                  calib_cache=tmp_path / "cache", calib_method="entropy")
    plain = export_bundle(ex_ckpt, tmp_path / "plain", ExportConfig(adaround_steps=0, **common))
    lines = []
    rounded = export_bundle(ex_ckpt, tmp_path / "ada", ExportConfig(adaround_steps=30, adaround_clips=4, **common),
                            log=lines.append)
    ada = rounded.manifest["checks"]["int8-cpu"]["adaround"]
    assert ada["steps"] == 30 and ada["flavour"] == "cpu" and ada["convolutions"] > 0 and ada["clips"] == 4
    assert "adaround" not in plain.manifest["checks"]["int8-cpu"]
    assert rounded.manifest["export_config"]["adaround_steps"] == 30
    assert any("adaptive rounding" in m for m in lines)
    assert rounded.manifest["checks"]["parity.fp32"]["passed"]

    assert_int8_from_the_rounded_copy(initializers, plain, rounded, "model")
    gate = rounded.manifest["checks"]["gate.int8-cpu"]
    assert gate["passed"] and 0 <= gate["agreement"] <= 100


@pytest.mark.parametrize("arch, form, role", [("tsm_tinycnn", "stateful", "stateful"), ("tsn_tinycnn", "incremental", "encoder")])
def test_adaround_reaches_the_stream_forms_int8_graphs(tmp_path, motiondigits, make_tiny_checkpoint, initializers,
                                                       arch, form, role):
    """--adaround-steps with --forms stream: the per-frame graph of the stateful or incremental form is
    exported from the same rounded copy as the window graph, then calibrated and gated as usual."""
    from edgevt.export.exporter import ExportConfig, export_bundle

    common = dict(precisions=("fp32", "int8"), calib=motiondigits / "target" / "train", flavour="cpu",
                  eval=motiondigits / "target" / "test", max_drop=100.0, min_agreement=0.0, forms=["stream"],
                  calib_cache=tmp_path / "cache", calib_method="entropy", threads=1)
    ckpt = make_tiny_checkpoint(arch)
    plain = export_bundle(ckpt, tmp_path / "plain", ExportConfig(adaround_steps=0, **common))
    rounded = export_bundle(ckpt, tmp_path / "ada", ExportConfig(adaround_steps=20, adaround_clips=4, **common))
    checks = rounded.manifest["checks"]
    assert checks[f"int8-cpu.{form}"]["adaround"]["steps"] == 20
    assert "adaround" not in plain.manifest["checks"][f"int8-cpu.{form}"]
    assert checks[f"gate.{form}.int8-cpu"]["passed"] and checks[f"parity.{form}.fp32"]["passed"]
    assert_int8_from_the_rounded_copy(initializers, plain, rounded, role)
