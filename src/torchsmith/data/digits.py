"""``digits``: the 8x8 handwritten digits shipped inside torchsmith, the embedded default dataset.

1,797 real 8x8 greyscale images of the digits 0-9 (the test set of the UCI "Optical Recognition of
Handwritten Digits", Alpaydin & Kaynak, 1998), in the copy scikit-learn bundles, stored unchanged in
``digits.npz`` beside this module (45 KB; attribution and licence in ``digits-LICENSE.txt``). Nothing is
downloaded and scikit-learn is not needed, so ``pip install torchsmith && torchsmith demo`` works on a
bare machine. Pixel values are 0..16; they are scaled to 0..255 bytes here and resized to the model's
input by :meth:`DataSplits.fitted_to`.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch

from torchsmith.data.base import DataSplits, ImageDataset, stratified_split
from torchsmith.errors import DataError

__all__ = ["load_digits", "digits_arrays", "DIGITS_TEST_FRACTION", "DIGITS_SPLIT_SEED", "DIGITS_FILE"]

#: A fixed, stratified split: 25% (450 images) for test, the same everywhere.
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0
#: The packaged file, next to this module.
DIGITS_FILE = "digits.npz"
_SHAPE = (1797, 8, 8)


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The raw data: images ``(1797, 8, 8)`` uint8 in 0..16 and labels ``(1797,)`` int64, as scikit-learn has them."""
    source = resources.files("torchsmith.data").joinpath(DIGITS_FILE)
    try:
        with source.open("rb") as f, np.load(f, allow_pickle=False) as archive:
            images = np.asarray(archive["images"], dtype=np.uint8)
            labels = np.asarray(archive["target"], dtype=np.int64)
    except (OSError, KeyError, ValueError) as e:
        raise DataError(f"the packaged digits data ({source}) is missing or damaged ({type(e).__name__}: {e}); "
                        f"reinstall torchsmith (pip install --force-reinstall torchsmith)") from e
    if images.shape != _SHAPE or labels.shape != _SHAPE[:1]:
        raise DataError(f"the packaged digits data ({source}) holds images {images.shape} and labels "
                        f"{labels.shape}, not {_SHAPE} and {_SHAPE[:1]}; reinstall torchsmith")
    return images, labels


def load_digits() -> DataSplits:
    """The digits dataset at its native 1x8x8, split 75/25 by class with a fixed seed."""
    pixels, target = digits_arrays()
    scaled = np.rint(pixels.astype(np.float64) * (255.0 / 16.0)).astype(np.uint8)
    images = torch.from_numpy(scaled).unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.from_numpy(target)
    full = ImageDataset(images, labels, classes=tuple(str(i) for i in range(10)), name="digits")
    train_idx, test_idx = stratified_split(labels, DIGITS_TEST_FRACTION, seed=DIGITS_SPLIT_SEED)
    # Small random shifts help; flips do not (a mirrored 2 is not a 2).
    return DataSplits(train=full.subset(train_idx), test=full.subset(test_idx), name="digits", augment="crop")
