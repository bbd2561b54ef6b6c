"""Well-known datasets as DataFlows, with tensorpack's names, arguments and datapoints.

===========================  ================================================  ==================
class                        datapoint                                         needs
===========================  ================================================  ==================
Mnist, FashionMnist          [float32 (28, 28) in [0, 1], uint8 label 0-9]     numpy
Cifar10, Cifar100            [uint8 (32, 32, 3) RGB, int label]                numpy
SVHNDigit                    [uint8 (32, 32, 3) RGB, uint8 label 0-9]          scipy
BSDS500                      [uint8 (321, 481, 3) BGR, float32 (321, 481)]     scipy, OpenCV
Caltech101Silhouettes        [float32 (28, 28) in {0, 1}, int label 0-100]     scipy
ILSVRC12 / ILSVRC12Files     [uint8 (h, w, 3) BGR or path, int label 0-999]    OpenCV / numpy
TinyImageNet                 [uint8 (64, 64, 3) BGR, int label 0-199]          OpenCV
Places365Standard            [uint8 (256, 256, 3) BGR, int label 0-364]        OpenCV
===========================  ================================================  ==================

Every class is an :class:`~dataflow.base.RNGDataFlow`: ``len`` is the size of the split, one pass
yields each datapoint once, and ``shuffle`` draws a new order each pass from ``self.rng``
(reproducible with :func:`dataflow.set_seed`). Defaults follow tensorpack: Mnist, SVHNDigit,
BSDS500 and Caltech101Silhouettes shuffle unless told not to; CIFAR, ILSVRC12, TinyImageNet and
Places365Standard shuffle the training split only.

Each module documents the dataset's published on-disk format. Readers look in ``dir`` (default
``$DATAFLOW_DATASET/<folder>``, then ``$TENSORPACK_DATASET``, then ``~/dataflow_data``) and download
missing files, verified against the published checksums; :func:`download` fetches a dataset by
name (:func:`dataset_names`) ahead of time. ``$DATAFLOW_DATASET_MIRROR`` points every download at
a mirror. Importing this package needs only numpy; scipy and OpenCV are imported when a reader
that needs them is built.
"""

from __future__ import annotations

from ._download import DownloadError, dataset_names, download, get_dataset_path
from .bsds500 import BSDS500
from .caltech101 import Caltech101Silhouettes
from .cifar import Cifar10, Cifar100, CifarBase
from .ilsvrc import ILSVRC12, ILSVRC12Files, ILSVRCMeta, TinyImageNet
from .mnist import FashionMnist, Mnist
from .places import Places365Standard
from .svhn import SVHNDigit

__all__ = [
    "Mnist",
    "FashionMnist",
    "CifarBase",
    "Cifar10",
    "Cifar100",
    "SVHNDigit",
    "BSDS500",
    "Caltech101Silhouettes",
    "ILSVRCMeta",
    "ILSVRC12Files",
    "ILSVRC12",
    "TinyImageNet",
    "Places365Standard",
    "download",
    "dataset_names",
    "DownloadError",
    "get_dataset_path",
]
