"""The registry (steepest.norms.get / available), constructor validation, input checks, repr."""

import math

import pytest
import torch

import steepest.norms as norms
from steepest.norms import RMS, ColNorm, Frobenius, Norm, RowNorm, SchattenP, Sign, Spectral

NAMES = ("colnorm", "frobenius", "rms", "rownorm", "schatten", "sign", "spectral")


def test_available_lists_every_name():
    names = norms.available()
    assert names == tuple(sorted(names)) and all(name == name.lower() for name in names)
    assert set(NAMES) <= set(names)  # the shipped norms; a new one registers itself


@pytest.mark.parametrize(
    ("name", "kwargs", "cls", "text"),
    [
        ("frobenius", {}, Frobenius, "Frobenius()"),
        ("spectral", {}, Spectral, "Spectral(backend='svd', steps=5, rms=False)"),
        (
            "Spectral",
            {"backend": "polar_express", "steps": 4, "rms": True},
            Spectral,
            "Spectral(backend='polar_express', steps=4, rms=True)",
        ),
        ("schatten", {"p": 4}, SchattenP, "SchattenP(p=4.0)"),
        ("schatten", {"p": math.inf}, SchattenP, "SchattenP(p=inf)"),
        ("sign", {}, Sign, "Sign()"),
        ("colnorm", {}, ColNorm, "ColNorm(rms=True)"),
        ("rownorm", {"rms": False}, RowNorm, "RowNorm(rms=False)"),
        ("rms", {}, RMS, "RMS()"),
    ],
)
def test_get_builds_the_named_norm(name, kwargs, cls, text):
    norm = norms.get(name, **kwargs)
    assert type(norm) is cls and isinstance(norm, Norm)
    assert repr(norm) == text


def test_get_passes_an_instance_through():
    norm = SchattenP(3)
    assert norms.get(norm) is norm
    with pytest.raises(TypeError, match="either a configured instance"):
        norms.get(norm, p=4)


def test_unknown_name_lists_the_allowed_names():
    with pytest.raises(ValueError, match="name='spectrall'") as info:
        norms.get("spectrall")
    for name in NAMES:
        assert repr(name) in str(info.value)
    with pytest.raises(TypeError, match="must be a str or a Norm"):
        norms.get(3)


def test_get_reports_unexpected_arguments():
    with pytest.raises(TypeError, match=r"norms.get\('sign'\).*'p'"):
        norms.get("sign", p=2)
    with pytest.raises(TypeError, match="'p'"):
        norms.get("schatten")


@pytest.mark.parametrize("p", [0.5, 0.999, -1.0, -math.inf])
def test_schatten_p_out_of_range(p):
    with pytest.raises(
        ValueError, match=rf"SchattenP: p={p!r} is out of range; need 1 <= p <= inf"
    ):
        SchattenP(p)


@pytest.mark.parametrize("p", [math.nan, "2", True, None])
def test_schatten_p_wrong_type(p):
    with pytest.raises(TypeError, match="SchattenP: p="):
        SchattenP(p)


@pytest.mark.parametrize(
    ("kwargs", "error", "text"),
    [
        ({"backend": "qr"}, ValueError, "backend='qr'"),
        ({"steps": 0}, ValueError, "steps=0"),
        ({"steps": 2.5}, ValueError, "steps=2.5"),
        ({"dtype": torch.int32}, ValueError, "dtype=torch.int32"),
        ({"coefficients": "jordan"}, ValueError, "coefficients='jordan'"),
        ({"rms": 1}, TypeError, "rms=1"),
    ],
)
def test_spectral_rejects_bad_arguments_at_construction(kwargs, error, text):
    with pytest.raises(error, match=r"^Spectral: .*" + text.replace("(", r"\(")):
        Spectral(**kwargs)


@pytest.mark.parametrize("cls", [ColNorm, RowNorm])
def test_rms_flag_must_be_bool(cls):
    with pytest.raises(TypeError, match=f"{cls.__name__}: rms='yes'; need True or False"):
        cls(rms="yes")


@pytest.mark.parametrize("norm", [Frobenius(), Spectral(), SchattenP(3), Sign(), ColNorm()])
def test_matrix_norms_reject_bad_inputs(norm):
    name = type(norm).__name__
    with pytest.raises(
        ValueError, match=rf"{name}.dualize: G has shape \(4,\); need \(..., m, n\)"
    ):
        norm.dualize(torch.randn(4))
    with pytest.raises(TypeError, match=rf"{name}.norm: X has dtype torch.int64"):
        norm.norm(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match=rf"{name}.dual_norm: G must be a torch.Tensor"):
        norm.dual_norm([[1.0]])
    with pytest.raises(ValueError, match="must be non-empty"):
        norm.dualize(torch.randn(3, 0))


def test_vector_norm_rejects_scalars():
    with pytest.raises(ValueError, match=r"RMS.norm: X has shape \(\); need \(..., n\)"):
        RMS().norm(torch.tensor(1.0))


def test_register_norm_adds_a_name_and_refuses_a_taken_one():
    from steepest.norms import registry

    with pytest.raises(ValueError, match="norm name 'sign' is empty or taken"):
        norms.register_norm("sign")(Sign)

    try:

        @norms.register_norm("Doubled")
        class Doubled(Norm):
            """2 ||X||_F: a scaled Frobenius norm."""

            def _scale(self, shape):
                return 2.0

            _norm = Frobenius._norm
            _dual_norm = Frobenius._dual_norm
            _dualize = Frobenius._dualize

        assert "doubled" in norms.available()
        assert norms.norm_class("DOUBLED") is Doubled
        G = torch.tensor([[3.0, 4.0]])
        T = norms.get("doubled").dualize(G)
        torch.testing.assert_close(T, torch.tensor([[0.3, 0.4]]))
        torch.testing.assert_close(norms.get("doubled").norm(T), torch.tensor(1.0))
    finally:
        registry._REGISTRY.pop("doubled", None)
    assert "doubled" not in norms.available()
