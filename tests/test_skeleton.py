"""The shared plumbing: argument checks, lazy exports and the nn Module contract."""
import importlib

import numpy as np
import pytest

from cvcore import _validate as v
from cvcore.nn.module import Module, Parameter


class TestValidate:
    def test_as_float_image_converts_and_keeps_values(self):
        out = v.as_float_image(np.array([[0, 200]], dtype=np.uint8))
        assert out.dtype == np.float32 and out.flags.c_contiguous
        assert out.tolist() == [[0.0, 200.0]]

    @pytest.mark.parametrize("bad, err, text", [
        (np.zeros((0, 3)), ValueError, "empty"),
        (np.zeros(5), ValueError, "dimensions"),
        (np.array([[np.nan]]), ValueError, "NaN"),
        (np.array([[np.inf]]), ValueError, "infinity"),
        (np.array([["a"]]), TypeError, "numeric"),
        (np.array([[1 + 1j]]), TypeError, "complex"),
    ])
    def test_as_float_image_rejects(self, bad, err, text):
        with pytest.raises(err, match=text):
            v.as_float_image(bad, "picture")

    def test_error_names_the_argument(self):
        with pytest.raises(ValueError, match="picture"):
            v.as_float_image(np.zeros(3), "picture")

    def test_scalars(self):
        assert v.check_positive(2, "sigma") == 2.0
        with pytest.raises(ValueError, match="sigma must be positive"):
            v.check_positive(0, "sigma")
        with pytest.raises(ValueError, match="finite"):
            v.check_positive(float("nan"), "sigma")
        with pytest.raises(TypeError):
            v.check_positive(True, "sigma")
        assert v.check_nonnegative(0, "cval") == 0.0
        with pytest.raises(ValueError):
            v.check_nonnegative(-1, "cval")
        assert v.check_int(np.int64(3), "k", minimum=1) == 3
        with pytest.raises(TypeError):
            v.check_int(2.5, "k")
        with pytest.raises(ValueError, match="k must be >= 1"):
            v.check_int(0, "k", minimum=1)
        assert v.check_pair(8, "cell") == (8, 8)
        assert v.check_pair((4, 6), "cell") == (4, 6)
        with pytest.raises(TypeError):
            v.check_pair((1, 2, 3), "cell")
        assert v.check_choice("a", {"a", "b"}, "mode") == "a"
        with pytest.raises(ValueError, match="mode must be one of"):
            v.check_choice("c", {"a", "b"}, "mode")


PACKAGES = ["cvcore", "cvcore.io", "cvcore.preprocess", "cvcore.features", "cvcore.nn",
            "cvcore.match", "cvcore.classify", "cvcore.train", "cvcore.adversarial"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package):
    """Every name a package lists in __all__ exists: no export points at missing code."""
    mod = importlib.import_module(package)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, f"{package}.{name}"


def test_unknown_attribute_is_an_attribute_error():
    import cvcore
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cvcore.nope


class _Leaf(Module):
    def __init__(self):
        super().__init__()
        self.weight = Parameter(np.ones((2, 3)))
        self.register_buffer("running_mean", np.zeros(2))


class _Tree(Module):
    def __init__(self):
        super().__init__()
        self.conv1 = _Leaf()
        self.layer1 = _Leaf()
        self.fc = Parameter(np.zeros(4))


class TestModule:
    def test_names_follow_attribute_paths(self):
        m = _Tree()
        assert [n for n, _ in m.named_parameters()] == ["fc", "conv1.weight", "layer1.weight"]
        assert list(m.state_dict()) == ["fc", "conv1.weight", "conv1.running_mean",
                                        "layer1.weight", "layer1.running_mean"]

    def test_state_dict_round_trip_and_copies(self):
        a, b = _Tree(), _Tree()
        sd = a.state_dict()
        sd["conv1.weight"][:] = 7
        assert a.conv1.weight.data[0, 0] == 1, "state_dict must return copies"
        b.load_state_dict(sd)
        assert b.conv1.weight.data[0, 0] == 7

    def test_load_state_dict_errors_name_keys_and_shapes(self):
        m = _Tree()
        sd = m.state_dict()
        del sd["fc"]
        sd["extra"] = np.zeros(1)
        with pytest.raises(KeyError, match=r"missing keys \['fc'\].*unexpected keys \['extra'\]"):
            m.load_state_dict(sd)
        sd = m.state_dict()
        sd["layer1.weight"] = np.zeros((3, 3))
        with pytest.raises(ValueError, match=r"layer1.weight: shape \(3, 3\)"):
            m.load_state_dict(sd)

    def test_modes_and_freezing(self):
        m = _Tree()
        m.eval()
        assert not m.training and not m.conv1.training
        m.train()
        assert m.layer1.training
        m.conv1.requires_grad_(False)
        assert not m.conv1.weight.requires_grad and m.layer1.weight.requires_grad


def test_float64_beyond_float32_range_is_named():
    """Regression: a finite float64 of 1e300 used to become inf in the float32 cast silently."""
    with pytest.raises(ValueError, match="beyond float32's range"):
        v.as_float_image(np.array([[1.0, -1e300]]))
