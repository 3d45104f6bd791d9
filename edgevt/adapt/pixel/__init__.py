"""Pixel-level adaptation: labeled source clips rendered as if filmed by the target camera.

``translate(TranslateConfig)`` (translate.py) trains or applies a frame translator and writes the
translated, still-labeled source clips; ``gan.py`` holds the CycleGAN (+ CyCADA semantic and
warp-equivariance losses), ``fda.py`` the no-training baselines (FDA, histogram matching),
``metrics.py`` temporal consistency, ``grid.py`` the PNG grids. ``pixel_config(adapt_cfg)`` is what
``edgevt adapt --pixel`` (and an auto-ladder rung) calls.
"""
from edgevt.adapt.pixel.translate import (
                                          METHODS,
                                          MIN_TARGET_CLIPS,
                                          TranslateConfig,
                                          TranslateResult,
                                          Translator,
                                          pixel_config,
                                          translate,
                                          translate_source,
)

__all__ = ["METHODS", "MIN_TARGET_CLIPS", "TranslateConfig", "TranslateResult", "Translator", "pixel_config",
           "translate", "translate_source"]
