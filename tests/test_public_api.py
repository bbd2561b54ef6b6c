"""Every public name of tensorpack's DataFlow is importable from `dataflow` and from its tensorpack module.

The name lists are tensorpack 0.11's ``__all__`` of each module (facts about its API, read from its
source): ``tensorpack.dataflow.X`` becomes ``dataflow.X``, for the modules of the package, the
modules of ``imgaug`` and ``dataset`` (whose packages export the union of their modules' names), and
``from tensorpack.dataflow import *``. Left out: ``imgaug.deform``, whose ``__all__`` is empty (its
code is kept there deprecated); ``dataset.places`` has no ``__all__`` (its class is listed).
"""

from __future__ import annotations

import importlib
import inspect

import pytest

import dataflow

TENSORPACK_MODULES = {
    "base": ["DataFlow", "ProxyDataFlow", "RNGDataFlow", "DataFlowTerminated"],
    "raw": ["FakeData", "DataFromQueue", "DataFromList", "DataFromGenerator", "DataFromIterable"],
    "parallel": [
        "PrefetchData",
        "MultiProcessPrefetchData",
        "MultiProcessRunner",
        "MultiProcessRunnerZMQ",
        "MultiThreadRunner",
        "PrefetchDataZMQ",
        "MultiThreadPrefetchData",
    ],
    "parallel_map": [
        "MultiThreadMapData",
        "MultiProcessMapData",
        "MultiProcessMapDataZMQ",
        "MultiProcessMapAndBatchData",
        "MultiProcessMapAndBatchDataZMQ",
    ],
    "format": ["HDF5Data", "LMDBData", "LMDBDataDecoder", "CaffeLMDB", "SVMLightData"],
    "serialize": ["LMDBSerializer", "NumpySerializer", "TFRecordSerializer", "HDF5Serializer"],
    "remote": ["send_dataflow_zmq", "RemoteDataZMQ"],
    "image": [
        "ImageFromFile",
        "AugmentImageComponent",
        "AugmentImageCoordinates",
        "AugmentImageComponents",
    ],
    "common": [
        "TestDataSpeed",
        "PrintData",
        "BatchData",
        "BatchDataByShape",
        "FixedSizeData",
        "MapData",
        "MapDataComponent",
        "RepeatedData",
        "RepeatedDataPoint",
        "RandomChooseData",
        "RandomMixData",
        "JoinData",
        "ConcatData",
        "SelectComponent",
        "LocallyShuffleData",
        "CacheData",
    ],
}


# tensorpack.dataflow.imgaug.<module>.__all__ and tensorpack.dataflow.dataset.<module>.__all__
TENSORPACK_SUBPACKAGES = {
    "imgaug": {
        "base": ["Augmentor", "ImageAugmentor", "AugmentorList", "PhotometricAugmentor"],
        "convert": ["ColorSpace", "Grayscale", "ToUint8", "ToFloat32"],
        "crop": [
            "RandomCrop",
            "CenterCrop",
            "RandomCropRandomShape",
            "GoogleNetRandomCropAndResize",
            "RandomCutout",
        ],
        "external": ["IAAugmentor", "Albumentations"],
        "geometry": ["Shift", "Rotation", "RotationAndCropValid", "Affine"],
        "imgproc": [
            "Hue",
            "Brightness",
            "BrightnessScale",
            "Contrast",
            "MeanVarianceNormalize",
            "GaussianBlur",
            "Gamma",
            "Clip",
            "Saturation",
            "Lighting",
            "MinMaxNormalize",
        ],
        "meta": ["RandomChooseAug", "MapImage", "Identity", "RandomApplyAug", "RandomOrderAug"],
        "misc": ["Flip", "Resize", "RandomResize", "ResizeShortestEdge", "Transpose"],
        "noise": ["JpegNoise", "GaussianNoise", "SaltPepperNoise"],
        "paste": ["CenterPaste", "BackgroundFiller", "ConstantBackgroundFiller", "RandomPaste"],
        "transform": [
            "Transform",
            "ResizeTransform",
            "CropTransform",
            "FlipTransform",
            "TransformList",
            "TransformFactory",
        ],
    },
    "dataset": {
        "bsds500": ["BSDS500"],
        "caltech101": ["Caltech101Silhouettes"],
        "cifar": ["CifarBase", "Cifar10", "Cifar100"],
        "ilsvrc": ["ILSVRCMeta", "ILSVRC12", "ILSVRC12Files", "TinyImageNet"],
        "mnist": ["Mnist", "FashionMnist"],
        "places": ["Places365Standard"],
        "svhn": ["SVHNDigit"],
    },
}

# Added to tensorpack after 0.11 (its master), outside its __all__.
TENSORPACK_LATER = {"serialize": ["DiskCacheSerializer"]}


@pytest.mark.parametrize("module", sorted(TENSORPACK_MODULES))
def test_tensorpack_names_live_in_the_same_module_and_at_the_top(module):
    mod = importlib.import_module(f"dataflow.{module}")
    for name in TENSORPACK_MODULES[module]:
        assert hasattr(mod, name), f"dataflow.{module} lacks {name}"
        assert getattr(dataflow, name) is getattr(mod, name), f"dataflow.{name} differs"
        assert name in mod.__all__ and name in dataflow.__all__


@pytest.mark.parametrize(
    ("package", "module"),
    [(p, m) for p, modules in sorted(TENSORPACK_SUBPACKAGES.items()) for m in sorted(modules)],
)
def test_tensorpack_subpackage_names_live_in_the_same_module_and_in_the_package(package, module):
    pkg = importlib.import_module(f"dataflow.{package}")
    mod = importlib.import_module(f"dataflow.{package}.{module}")
    for name in TENSORPACK_SUBPACKAGES[package][module]:
        assert hasattr(mod, name), f"dataflow.{package}.{module} lacks {name}"
        assert name in mod.__all__, f"{name} not in dataflow.{package}.{module}.__all__"
        assert getattr(pkg, name) is getattr(mod, name), f"dataflow.{package}.{name} differs"
        assert name in pkg.__all__, f"{name} not in dataflow.{package}.__all__"


@pytest.mark.parametrize("module", sorted(TENSORPACK_LATER))
def test_names_tensorpack_added_later_live_in_the_same_module(module):
    mod = importlib.import_module(f"dataflow.{module}")
    for name in TENSORPACK_LATER[module]:
        assert name in mod.__all__ and getattr(dataflow, name) is getattr(mod, name)


def test_star_import_binds_what_tensorpacks_did():
    # tensorpack.dataflow's __all__: its modules' __all__, plus the subpackages imgaug and dataset
    namespace: dict = {}
    exec("from dataflow import *", namespace)
    for module, names in TENSORPACK_MODULES.items():
        mod = importlib.import_module(f"dataflow.{module}")
        for name in names:
            assert name in namespace, f"from dataflow import * lacks {name}"
            assert namespace[name] is getattr(mod, name), name
    for package, modules in TENSORPACK_SUBPACKAGES.items():
        assert package in namespace, f"from dataflow import * lacks {package}"
        # the subpackage itself, or its stand-in until first use: the same names either way
        real = importlib.import_module(f"dataflow.{package}")
        for names in modules.values():
            for name in names:
                assert getattr(namespace[package], name) is getattr(real, name), (package, name)


def test_top_level_all_is_importable():
    for name in dataflow.__all__:
        assert hasattr(dataflow, name), name


def test_public_classes_document_themselves():
    for name in dataflow.__all__:
        obj = getattr(dataflow, name)
        if inspect.isclass(obj) and obj.__module__.startswith("dataflow"):
            assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"


@pytest.mark.parametrize(
    ("cls", "params"),
    [
        ("BatchData", ["ds", "batch_size", "remainder", "use_list"]),
        ("BatchDataByShape", ["ds", "batch_size", "idx"]),
        ("FixedSizeData", ["ds", "size", "keep_state"]),
        ("MapDataComponent", ["ds", "func", "index"]),
        ("LocallyShuffleData", ["ds", "buffer_size", "num_reuse", "shuffle_interval"]),
        ("CacheData", ["ds", "shuffle"]),
        ("TestDataSpeed", ["ds", "size", "warmup"]),
        ("FakeData", ["shapes", "size", "random", "dtype", "domain"]),
        ("DataFromList", ["lst", "shuffle"]),
        ("RepeatedData", ["ds", "num"]),
        ("SelectComponent", ["ds", "idxs"]),
    ],
)
def test_signatures_follow_tensorpack(cls, params):
    sig = inspect.signature(getattr(dataflow, cls))
    assert list(sig.parameters)[: len(params)] == params
