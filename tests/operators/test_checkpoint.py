import pytest
import torch

from neurosolve.checkpoint import (
    FORMAT,
    build_model,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from neurosolve.errors import FileFormatError, InvalidInputError, UnknownNameError
from neurosolve.operators.mgno import MgNO


def _mgno():
    return MgNO(1, 1, channels=3, layers=1, levels=2)


def test_roundtrip_rebuilds_identical_model(tmp_path):
    net = _mgno()
    path = save_checkpoint(
        tmp_path / "m.pt",
        kind="mgno",
        kwargs=net.config(),
        state_dict=net.state_dict(),
        extra={"epoch": 3},
    )
    model, data = load_model(path, kind="mgno")
    x = torch.randn(1, 1, 9, 7)
    torch.testing.assert_close(model(x), net.eval()(x))
    assert data["extra"] == {"epoch": 3} and data["format"] == FORMAT


def test_refuses_foreign_torch_file(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}}, path)
    with pytest.raises(FileFormatError, match="not a neurosolve checkpoint"):
        load_checkpoint(path)


def test_refuses_text_and_truncated_files(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(FileFormatError, match="not a readable checkpoint"):
        load_checkpoint(text)
    net = _mgno()
    good = save_checkpoint(
        tmp_path / "g.pt", kind="mgno", kwargs=net.config(), state_dict=net.state_dict()
    )
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(FileFormatError):
        load_checkpoint(cut)
    with pytest.raises(FileFormatError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_refuses_pickled_code(tmp_path):
    # weights_only=True: a file that would run code is refused, not executed
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "obj": InvalidInputError("x")}, path)
    with pytest.raises(FileFormatError):
        load_checkpoint(path)


def test_refuses_other_model_kind_and_newer_format(tmp_path):
    net = _mgno()
    path = save_checkpoint(
        tmp_path / "m.pt", kind="mgno", kwargs=net.config(), state_dict=net.state_dict()
    )
    with pytest.raises(FileFormatError, match="holds a 'mgno' model, not a 'fno2d'"):
        load_checkpoint(path, kind="fno2d")
    data = torch.load(path, weights_only=True)
    data["format_version"] = 99
    torch.save(data, tmp_path / "new.pt")
    with pytest.raises(FileFormatError, match="format version 99"):
        load_checkpoint(tmp_path / "new.pt")


def test_weights_that_do_not_fit_are_refused(tmp_path):
    net = _mgno()
    kwargs = {**net.config(), "channels": 5}
    path = save_checkpoint(
        tmp_path / "m.pt", kind="mgno", kwargs=kwargs, state_dict=net.state_dict()
    )
    with pytest.raises(FileFormatError, match="do not fit"):
        load_model(path)


def test_build_model_errors():
    with pytest.raises(UnknownNameError, match="unknown model kind 'resnet'"):
        build_model("resnet")
    with pytest.raises(InvalidInputError, match="cannot build"):
        build_model("mgno", colour="red")


def test_save_is_atomic_and_leaves_no_temporary_files(tmp_path):
    net = _mgno()
    save_checkpoint(
        tmp_path / "a" / "m.pt", kind="mgno", kwargs=net.config(), state_dict=net.state_dict()
    )
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["m.pt"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_loads_on_cuda(tmp_path):
    net = _mgno()
    path = save_checkpoint(
        tmp_path / "m.pt", kind="mgno", kwargs=net.config(), state_dict=net.state_dict()
    )
    model, _ = load_model(path, map_location="cuda")
    assert next(model.parameters()).is_cuda
