"""``digits``: scikit-learn's bundled handwritten digits, the embedded default dataset.

1,797 real 8x8 greyscale images of the digits 0-9 (UCI ML hand-written digits,
test set of Alpaydin & Kaynak), shipped inside scikit-learn, so nothing is
downloaded. Pixel values are 0..16; they are scaled to 0..255 bytes here and
resized to the model's input by :meth:`DataSplits.fitted_to`.
"""

from __future__ import annotations

import numpy as np
import torch

from torchsmith.data.base import DataSplits, ImageDataset, stratified_split
from torchsmith.errors import DataError

__all__ = ["load_digits", "DIGITS_TEST_FRACTION", "DIGITS_SPLIT_SEED"]

#: A fixed, stratified split: 25% (450 images) for test, the same everywhere.
DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = 0

_MISSING = ("the digits dataset comes from scikit-learn, which is not installed; "
            "install it with `pip install 'torchsmith[data]'` (or `pip install scikit-learn`)")


def load_digits() -> DataSplits:
    """The digits dataset at its native 1x8x8, split 75/25 by class with a fixed seed."""
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as e:
        raise DataError(_MISSING) from e
    bunch = _sk_load_digits()
    pixels = np.asarray(bunch.images, dtype=np.float64)  # (1797, 8, 8), values 0..16
    images = torch.from_numpy(np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)  # (N, 1, 8, 8)
    labels = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    full = ImageDataset(images, labels, classes=tuple(str(i) for i in range(10)), name="digits")
    train_idx, test_idx = stratified_split(labels, DIGITS_TEST_FRACTION, seed=DIGITS_SPLIT_SEED)
    # Small random shifts help; flips do not (a mirrored 2 is not a 2).
    return DataSplits(train=full.subset(train_idx), test=full.subset(test_idx), name="digits", augment="crop")
