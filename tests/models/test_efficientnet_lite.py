"""The bundled EfficientNet-Lite0 ImageNet weights must be real: scikit-image's sample photos are
classified as what they show."""
import cv2
import numpy as np
import skimage.data
import torch

from edgevt.models.efficientnet_lite import LITE0_MEAN, LITE0_STD, efficientnet_lite0
from edgevt.models.zoo import create_model

ESPRESSO = 967
CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _batch(*images):
    x = np.stack([cv2.resize(im, (224, 224), interpolation=cv2.INTER_AREA) for im in images]).astype(np.float32)
    x = (x / 255 - np.array(LITE0_MEAN, np.float32)) / np.array(LITE0_STD, np.float32)
    return torch.from_numpy(x).permute(0, 3, 1, 2)


def test_pretrained_lite0_recognises_coffee_and_cat():
    model = efficientnet_lite0(pretrained=True).eval()
    with torch.no_grad():
        probs = model(_batch(skimage.data.coffee(), skimage.data.chelsea())).softmax(-1)
    top = probs.argmax(-1).tolist()
    assert top[0] == ESPRESSO and probs[0, ESPRESSO] > 0.5
    assert top[1] in CATS


def test_temporal_model_uses_the_pretrained_backbone():
    lite = efficientnet_lite0(pretrained=True)
    tsn = create_model("tsn_efficientnet_lite0", 6, num_frames=4, weights="pretrained")
    torch.testing.assert_close(tsn.encoder.net._conv_stem.weight, lite._conv_stem.weight)
    scratch = create_model("tsn_efficientnet_lite0", 6, num_frames=4)
    assert not torch.equal(scratch.encoder.net._conv_stem.weight, lite._conv_stem.weight)
