"""Places365-Standard, low-resolution (256x256) images, in the published "easy directory structure".

On-disk format (``places365standard_easyformat.tar`` extracted): ``dir/train.txt`` and
``dir/val.txt`` list one image per line as a path relative to ``dir`` whose second component is the
class folder, e.g. ``train/airfield/00000001.jpg`` (anything after the path on a line is ignored);
the images are JPEG files under ``dir``. Class ids are the class names sorted alphabetically (the
order of the published ``categories_places365.txt``). Images are decoded with OpenCV.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from .. import _state
from ..base import RNGDataFlow
from ..errors import FormatError
from ._common import check_choice, check_dir, import_cv2, imread, shuffle_default

__all__ = ["Places365Standard"]

logger = logging.getLogger(__name__)


class Places365Standard(_state.PositionalPass, RNGDataFlow):
    """Places365-Standard: datapoints ``[image, label]``, image a uint8 BGR array (256, 256, 3),
    label an int in [0, 364] (the class's position among the sorted class names).

    ``len`` is the number of lines of the split's list file. Shuffled by default for ``'train'``
    only (a new order each pass, from ``self.rng``); otherwise in list-file order.
    """

    def __init__(self, dir: str | os.PathLike[str], name: str, shuffle: bool | None = None) -> None:
        """
        Args:
            dir: the dataset folder in its "easy directory structure".
            name: ``'train'`` or ``'val'``.
            shuffle: shuffle every pass; default: only for ``'train'``.
        """
        who = type(self).__name__
        self.name = check_choice(name, ("train", "val"), who, "name")
        import_cv2(who)
        root = check_dir(os.path.expanduser(os.fspath(dir)), who)
        self.shuffle = shuffle_default(shuffle, name)
        label_file = os.path.join(root, name + ".txt")
        if not os.path.isfile(label_file):
            raise FormatError(f"{who}: {label_file} is missing")
        all_files = []
        with open(label_file, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                relpath = line.split()[0]
                parts = relpath.strip("/").split("/")
                if len(parts) < 3:
                    raise FormatError(
                        f"{label_file}:{lineno}: expected split/class/file, got {relpath!r}"
                    )
                all_files.append((os.path.join(root, relpath.lstrip("/")), parts[1]))
        self._labels = sorted({label for _, label in all_files})
        labelmap = {label: i for i, label in enumerate(self._labels)}
        self._files = [(path, labelmap[label]) for path, label in all_files]
        logger.info("Found %d images in %s", len(self._files), label_file)

    def get_label_names(self) -> list[str]:
        """The name of each class, indexed by label."""
        return list(self._labels)

    def __len__(self) -> int:
        return len(self._files)

    _df_save = _state.PositionalPass._df_save  # its pass: ``pos`` below
    _df_strides = True  # ShardByRank: its pass visits _state.pass_positions

    def __iter__(self) -> Iterator[list[Any]]:
        who = type(self).__name__
        idxs = np.arange(len(self._files))
        if self.shuffle:
            self.rng.shuffle(idxs)
        for pos in _state.pass_positions(self, len(idxs)):  # ``pos``: saved
            k = idxs[pos]
            fname, label = self._files[k]
            yield [imread(fname, who), label]
