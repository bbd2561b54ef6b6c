"""Optional dependencies load lazily: ``require`` and the ``imgaug``/``dataset`` stand-ins.

What a process has imported is checked in fresh interpreters (``sys.modules`` of this one holds
whatever other tests imported).
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys
import textwrap
import types

import pytest

from dataflow._lazy import LazyModule, require

HEAVY = ("cv2", "scipy", "dataflow.imgaug", "dataflow.dataset")


def run_python(code: str, timeout: float = 60) -> str:
    """Run ``code`` in a fresh interpreter; return its stdout, fail with its stderr."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.timeout(90)
def test_import_and_star_import_bind_the_subpackages_without_importing_them():
    out = run_python(
        f"""
        import sys, types
        HEAVY = {HEAVY!r}
        import dataflow
        assert not [m for m in HEAVY if m in sys.modules], [m for m in HEAVY if m in sys.modules]
        from dataflow import *
        assert "imgaug" in dataflow.__all__ and "dataset" in dataflow.__all__
        assert isinstance(imgaug, types.ModuleType) and isinstance(dataset, types.ModuleType)
        assert "not imported yet" in repr(imgaug), repr(imgaug)
        assert not [m for m in HEAVY if m in sys.modules], [m for m in HEAVY if m in sys.modules]

        # the first attribute access imports the real subpackage, and only it
        flip = imgaug.Flip(horiz=True)
        real = sys.modules["dataflow.imgaug"]
        assert "cv2" in sys.modules and "dataflow.dataset" not in sys.modules
        assert imgaug.Flip is real.Flip and isinstance(flip, imgaug.ImageAugmentor)
        assert isinstance(flip, real.ImageAugmentor)
        assert repr(imgaug) == repr(real)
        assert set(dir(imgaug)) == set(dir(real)) and "Rotation" in dir(imgaug)
        assert imgaug.__name__ == "dataflow.imgaug" and imgaug.__file__ == real.__file__
        # from now on the package attribute is the real module
        assert dataflow.imgaug is real
        from dataflow import imgaug as again
        assert again is real

        mnist = dataset.Mnist
        assert mnist is sys.modules["dataflow.dataset"].Mnist
        assert "scipy" not in sys.modules  # the dataset package needs only numpy
        print("ok")
        """
    )
    assert out.strip() == "ok"


@pytest.mark.timeout(60)
def test_import_dataflow_imgaug_gives_the_real_module():
    run_python(
        """
        import sys, types
        import dataflow.imgaug
        from dataflow import imgaug
        from dataflow._lazy import LazyModule
        real = sys.modules["dataflow.imgaug"]
        assert dataflow.imgaug is real and imgaug is real
        assert type(real) is types.ModuleType and not isinstance(real, LazyModule)
        import dataflow.imgaug.geometry as geometry
        assert geometry.Rotation is imgaug.Rotation
        """
    )


@pytest.mark.timeout(60)
def test_from_dataflow_import_imgaug_behaves_as_the_module():
    run_python(
        """
        import sys
        import numpy as np
        from dataflow import imgaug  # a stand-in until first used
        aug = imgaug.AugmentorList([imgaug.Flip(horiz=True), imgaug.Resize((4, 6))])
        img = np.arange(2 * 3, dtype=np.uint8).reshape(2, 3)
        assert aug.augment(img).shape == (4, 6)
        assert isinstance(aug.get_transform(img), imgaug.TransformList)
        real = sys.modules["dataflow.imgaug"]
        imgaug.EXTRA = 1  # assignment goes to the real module
        assert real.EXTRA == 1
        del imgaug.EXTRA
        assert not hasattr(real, "EXTRA")
        try:
            imgaug.NoSuchAugmentor
        except AttributeError as e:
            assert "NoSuchAugmentor" in str(e), e
        else:
            raise SystemExit("no AttributeError")
        """
    )


@pytest.mark.timeout(60)
def test_without_opencv_the_star_import_works_and_imgaug_names_the_extra():
    out = run_python(
        """
        import sys
        sys.modules["cv2"] = None  # as if OpenCV were not installed
        from dataflow import *
        ds = BatchData(DataFromList([[1], [2]], shuffle=False), 2)
        assert [b[0].tolist() for b in ds] == [[1, 2]]
        for attempt in range(2):  # a failed import is not remembered as a broken module
            try:
                imgaug.Flip
            except ImportError as e:
                assert "pip install 'pydataflow[image]'" in str(e), e
                print(e)
            else:
                raise SystemExit("no ImportError")
        try:
            import dataflow.imgaug
        except ImportError as e:
            assert "pydataflow[image]" in str(e), e
        else:
            raise SystemExit("no ImportError")
        assert "dataflow.imgaug" not in sys.modules
        """
    )
    assert "dataflow.imgaug requires opencv-python-headless" in out


@pytest.mark.timeout(60)
def test_without_scipy_dataset_imports_and_its_readers_name_the_extra(tmp_path):
    run_python(
        f"""
        import sys
        sys.modules["scipy"] = None  # as if scipy were not installed
        sys.modules["scipy.io"] = None
        from dataflow import *
        assert dataset.Mnist.__name__ == "Mnist"
        try:
            dataset.BSDS500("train", data_dir={str(tmp_path)!r})
        except ImportError as e:
            assert "pip install 'pydataflow[dataset]'" in str(e), e
        else:
            raise SystemExit("no ImportError")
        """
    )


def test_lazy_module_in_process():
    lazy = LazyModule("dataflow.dataset")
    assert isinstance(lazy, types.ModuleType)
    assert "Cifar10" in dir(lazy)
    assert lazy.Cifar10 is sys.modules["dataflow.dataset"].Cifar10
    # pickled and copied by reference to the real module
    assert pickle.loads(pickle.dumps(lazy)) is sys.modules["dataflow.dataset"]
    assert copy.deepcopy({"m": lazy})["m"] is sys.modules["dataflow.dataset"]
    missing = LazyModule("dataflow.no_such_module")
    assert repr(missing) == "<module 'dataflow.no_such_module' (not imported yet)>"
    with pytest.raises(ModuleNotFoundError, match="dataflow.no_such_module"):
        _ = missing.anything


def test_require_names_the_extra_or_the_package():
    assert require("json") is sys.modules["json"]
    with pytest.raises(
        ImportError, match=r"thing requires no_such_pkg: pip install 'pydataflow\[x\]'"
    ):
        require("no_such_pkg", "x", who="thing")
    with pytest.raises(ImportError, match="requires pyzmq: pip install pyzmq") as info:
        require("zmq.no_such_submodule")
    assert info.value.name == "zmq.no_such_submodule"


FRAMEWORKS = ("torch", "jax", "tensorflow")


@pytest.mark.timeout(90)
def test_framework_adapters_import_no_framework_until_called():
    out = run_python(
        f"""
        import sys
        import dataflow
        from dataflow import *
        assert {{"to_torch", "to_jax", "to_tf", "ShardByRank"}} <= set(dataflow.__all__)
        ds = ShardByRank(DataFromList([[i] for i in range(5)], shuffle=False), rank=1, world_size=2)
        assert [dp[0] for dp in ds] == [1, 3]
        assert not [m for m in {FRAMEWORKS!r} if m in sys.modules], [m for m in {FRAMEWORKS!r} if m in sys.modules]
        print("ok")
        """
    )
    assert out.strip() == "ok"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("adapter", "module", "extra"),
    [("to_torch", "torch", "torch"), ("to_jax", "jax", "jax"), ("to_tf", "tensorflow", "tf")],
)
def test_an_adapter_without_its_framework_names_the_extra(adapter, module, extra):
    out = run_python(
        f"""
        import sys
        sys.modules[{module!r}] = None  # as if it were not installed
        import dataflow
        try:
            dataflow.{adapter}(dataflow.DataFromList([[1]]))
        except ImportError as e:
            print(e)
        else:
            raise SystemExit("no ImportError")
        """
    )
    assert f"pip install 'pydataflow[{extra}]'" in out and f"dataflow.{adapter} requires" in out
