"""save / load / load_into: round trips, self-description, tied weights, hashes, the tutorial's state_dict flow."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn

import torchsmith as ts
from torchsmith.checkpoint import checkpoint_info, convert_checkpoint, diff_checkpoints, load_into, training_state_path
from torchsmith.checkpoint._atomic import temp_files_for
from torchsmith.checkpoint._format import read_header

GOLDEN = Path(__file__).parent / "golden" / "torchvision_resnet_keys.json"


class TiedLM(nn.Module):
    """A tiny language model whose output projection is the embedding (weight tying, Press & Wolf 2017)."""

    def __init__(self, vocab: int = 11, dim: int = 6) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight  # tied: one Parameter under two names
        self.init_policy = {"preset": "kaiming"}

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.embed(idx)))  # (B, T, vocab)


@pytest.fixture
def tied_lm_registered():
    """Register the tied model for one test only: tests parametrised over list_models() must not see it."""
    from torchsmith import registry

    @ts.register_model(name="_ckpt_test_tied_lm")
    def _tied_lm(*, vocab: int = 11, dim: int = 6) -> TiedLM:
        return TiedLM(vocab, dim)

    try:
        yield "_ckpt_test_tied_lm"
    finally:
        registry._MODELS.pop("_ckpt_test_tied_lm", None)


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_save_load_round_trip_rebuilds_model_and_records_everything(tmp_path: Path) -> None:
    model = ts.create_model("lenet", in_channels=1, input_size=(28, 24), num_classes=7)
    path = ts.save(model, tmp_path / "lenet.safetensors")
    assert path == tmp_path / "lenet.safetensors"
    meta = read_header(path).metadata
    assert meta["format"] == "torchsmith.checkpoint" and meta["format_version"] == "1"
    assert meta["torch_version"] == torch.__version__ and meta["torchsmith_version"] == ts.__version__
    assert json.loads(meta["arch"]) == {"name": "lenet", "kwargs": {"in_channels": 1, "num_classes": 7,
                                                                   "input_size": {"$tuple": [28, 24]}}}
    assert json.loads(meta["input_size"]) == [1, 28, 24]
    assert len(meta["sha256"]) == 64 and meta["sha256"] != "f" * 64

    loaded = ts.load(path)
    assert type(loaded) is type(model)
    assert loaded.torchsmith_arch == {"name": "lenet", "kwargs": {"in_channels": 1, "num_classes": 7,
                                                                 "input_size": (28, 24)}}
    assert _same_state(model, loaded)
    x = torch.randn(2, 1, 28, 24)
    assert torch.equal(model(x), loaded(x))
    assert all(not p.is_meta for p in loaded.parameters())
    assert all(p.requires_grad for p in loaded.parameters())
    # The file is plain safetensors: the reference reader agrees.
    with safe_open(str(path), framework="pt") as f:
        assert set(f.keys()) == set(model.state_dict())
        assert torch.equal(f.get_tensor("fc3.weight"), model.fc3.weight.detach())


def test_loaded_model_trains_without_touching_the_file(tmp_path: Path) -> None:
    model = ts.create_model("lenet", num_classes=3, input_size=16)
    path = ts.save(model, tmp_path / "m.safetensors")
    before = path.read_bytes()
    loaded = ts.load(path)
    opt = torch.optim.SGD(loaded.parameters(), lr=0.5)
    loaded(torch.randn(4, 3, 16, 16)).square().mean().backward()
    opt.step()  # writes to the memory-mapped (copy-on-write) parameters
    assert not torch.equal(loaded.fc3.weight, model.fc3.weight)
    assert path.read_bytes() == before
    assert ts.load(path).fc3.weight.equal(model.fc3.weight)


def test_resnet_round_trip_with_batchnorm_buffers_and_class_option(tmp_path: Path) -> None:
    model = ts.create_model("resnet20", num_classes=4, norm_layer=nn.BatchNorm2d)
    model.train()
    model(torch.randn(4, 3, 32, 32))  # moves the running statistics away from their init
    path = ts.save(model, tmp_path / "r20.safetensors")
    assert json.loads(read_header(path).metadata["arch"])["kwargs"]["norm_layer"] == {"$torch.nn": "BatchNorm2d"}
    loaded = ts.load(path)
    assert loaded.torchsmith_arch["kwargs"]["norm_layer"] is nn.BatchNorm2d
    assert _same_state(model, loaded)
    model.eval()
    loaded.eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(model(x), loaded(x))


def test_unstorable_option_fails_at_save_and_touches_no_file(tmp_path: Path) -> None:
    model = ts.create_model("resnet20", norm_layer=lambda c: nn.GroupNorm(4, c))
    path = tmp_path / "r.safetensors"
    ts.save(ts.create_model("lenet"), path)
    before = path.read_bytes()
    with pytest.raises(ts.CheckpointError, match="norm_layer.*cannot store without pickle"):
        ts.save(model, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.safetensors"]


def test_tied_weights_stored_once_and_restored_tied(tmp_path: Path, tied_lm_registered: str) -> None:
    model = ts.create_model("_ckpt_test_tied_lm", vocab=11, dim=6)
    path = ts.save(model, tmp_path / "lm.safetensors")
    header = read_header(path)
    assert set(header.entries) == {"embed.weight", "norm.weight", "norm.bias"}  # head.weight stored once
    assert json.loads(header.metadata["aliases"]) == {"head.weight": "embed.weight"}
    loaded = ts.load(path)
    assert loaded.head.weight is loaded.embed.weight
    assert len(list(loaded.parameters())) == len(list(model.parameters())) == 3
    idx = torch.tensor([[1, 2, 3]])
    assert torch.equal(model(idx), loaded(idx))
    # Still tied after loading into an existing model, and the info table says so.
    fresh = TiedLM()
    report = load_into(fresh, path)
    assert report.ok and fresh.head.weight is fresh.embed.weight
    assert torch.equal(fresh.embed.weight, model.embed.weight)
    info = checkpoint_info(path)
    assert {t.name: t.alias_of for t in info.tensors}["head.weight"] == "embed.weight"
    assert info.num_parameters == 11 * 6 + 12


def test_model_without_arch_saves_weights_and_load_explains(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    path = ts.save(model, tmp_path / "seq.safetensors")
    with pytest.raises(ts.CheckpointError, match="no architecture.*load_into"):
        ts.load(path)
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    assert load_into(other, path).ok and _same_state(model, other)


@pytest.mark.parametrize("where", ["first", "last", "random"])
def test_one_flipped_byte_in_tensor_data_is_detected(tmp_path: Path, where: str) -> None:
    model = ts.create_model("lenet", num_classes=3, input_size=16)
    path = ts.save(model, tmp_path / "m.safetensors")
    header = read_header(path)
    data = bytearray(path.read_bytes())
    start, end = header.data_start, len(data)
    rng = random.Random(0)
    positions = {"first": [start], "last": [end - 1], "random": rng.sample(range(start, end), 40)}[where]
    bad = tmp_path / "bad.safetensors"
    for pos in positions:
        flipped = bytearray(data)
        flipped[pos] ^= 1 << rng.randrange(8)
        bad.write_bytes(flipped)
        with pytest.raises(ts.CheckpointError, match=r"bad\.safetensors failed verification: the sha256"):
            ts.load(bad)
        with pytest.raises(ts.CheckpointError, match="failed verification"):
            load_into(ts.create_model("lenet", num_classes=3, input_size=16), bad)
    # An explicit opt-out for trusted files: the model is built and every tensor loaded, flipped bit and all.
    unverified = ts.load(bad, verify=False)
    assert unverified.state_dict().keys() == model.state_dict().keys()
    assert not all(torch.equal(unverified.state_dict()[k], t) for k, t in model.state_dict().items())


def test_every_single_byte_flip_in_a_small_file_is_detected(tmp_path: Path) -> None:
    """Exhaustive on a small file: each byte of the tensor data, flipped on its own, fails verification."""
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))  # float32 weights and an int64 buffer
    path = ts.save(model, tmp_path / "small.safetensors")
    header = read_header(path)
    data = path.read_bytes()
    bad = tmp_path / "bad.safetensors"
    for pos in range(header.data_start, len(data)):
        flipped = bytearray(data)
        flipped[pos] ^= 0x01
        bad.write_bytes(flipped)
        with pytest.raises(ts.CheckpointError, match="failed verification"):
            checkpoint_info(bad)


def test_renamed_tensor_in_header_is_detected(tmp_path: Path) -> None:
    path = ts.save(ts.create_model("lenet"), tmp_path / "m.safetensors")
    raw = path.read_bytes().replace(b'"fc1.bias"', b'"fc9.bias"', 1)
    path.write_bytes(raw)
    with pytest.raises(ts.CheckpointError, match="tensor table or metadata .* does not match"):
        ts.load(path)


def test_save_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ts.CheckpointError, match="directory .*missing.* does not exist"):
        ts.save(ts.create_model("lenet"), tmp_path / "missing" / "m.safetensors")
    with pytest.raises(ts.CheckpointError, match="is a directory"):
        ts.save(ts.create_model("lenet"), tmp_path)
    with pytest.raises(ts.CheckpointError, match="needs an nn.Module"):
        ts.save({"w": torch.ones(1)}, tmp_path / "x.safetensors")  # type: ignore[arg-type]
    with torch.device("meta"):
        meta_model = nn.Linear(2, 2)
    with pytest.raises(ts.CheckpointError, match="meta device"):
        ts.save(meta_model, tmp_path / "meta.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_leaves_no_temp_files_and_replaces_atomically(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    a, b = ts.create_model("lenet"), ts.create_model("lenet")
    ts.save(a, path)
    held = ts.load(path)  # memory-maps the old file; replacing it must not disturb this model
    ts.save(b, path)
    assert _same_state(held, a) and _same_state(ts.load(path), b)
    assert temp_files_for(path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_tutorial_state_dict_round_trip(tmp_path: Path) -> None:
    """The classic flow: torch.save(model.state_dict()), then load_state_dict(torch.load(..., weights_only=True))."""
    model = ts.create_model("lenet")
    torch.save(model.state_dict(), tmp_path / "model.pth")
    again = ts.create_model("lenet")
    again.load_state_dict(torch.load(tmp_path / "model.pth", weights_only=True))
    assert _same_state(model, again)
    # ... and the same file through torchsmith, with a report.
    third = ts.create_model("lenet")
    report = load_into(third, tmp_path / "model.pth")
    assert report.ok and report.loaded and len(report.matched) == 10 and _same_state(model, third)


def _torchvision_resnet18_state() -> dict[str, torch.Tensor]:
    """A state dict with torchvision's resnet18 keys and shapes (from the golden file when present)."""
    gen = torch.Generator().manual_seed(0)
    if GOLDEN.exists():
        shapes = json.loads(GOLDEN.read_text())["resnet18"]
    else:  # torchvision's names are torchsmith's by construction
        shapes = {k: list(v.shape) for k, v in ts.create_model("resnet18").state_dict().items()}
    return {k: (torch.randint(0, 100, s, generator=gen) if k.endswith("num_batches_tracked")
                else torch.randn(s, generator=gen)) for k, s in shapes.items()}


@pytest.mark.slow
def test_torchvision_style_resnet18_state_dict_loads_strict(tmp_path: Path) -> None:
    state = _torchvision_resnet18_state()
    torch.save(state, tmp_path / "resnet18-f37072fd.pth")
    model = ts.create_model("resnet18")
    report = load_into(model, tmp_path / "resnet18-f37072fd.pth", strict=True)
    assert report.ok and not report.remapped and len(report.matched) == len(state)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    # The same weights as plain torch would load them.
    plain = ts.create_model("resnet18")
    plain.load_state_dict(torch.load(tmp_path / "resnet18-f37072fd.pth", weights_only=True), strict=True)
    assert _same_state(model, plain)
    # Converted with its architecture, the file rebuilds the model by itself.
    out = convert_checkpoint(tmp_path / "resnet18-f37072fd.pth", tmp_path / "r18.safetensors", model=plain)
    assert _same_state(ts.load(out), model)


def test_map_location_and_training_state_path(tmp_path: Path) -> None:
    path = ts.save(ts.create_model("lenet"), tmp_path / "m.safetensors")
    assert next(ts.load(path, map_location=torch.device("cpu")).parameters()).device.type == "cpu"
    assert training_state_path(path) == tmp_path / "m.train.safetensors"
    assert training_state_path(tmp_path / "m.train.safetensors") == tmp_path / "m.train.safetensors"


def test_diff_reports_keys_shapes_and_max_abs_difference(tmp_path: Path) -> None:
    a = ts.create_model("lenet")
    b = ts.create_model("lenet")
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        b.fc1.bias[3] += 0.25
    pa, pb = ts.save(a, tmp_path / "a.safetensors"), ts.save(b, tmp_path / "b.safetensors")
    d = diff_checkpoints(pa, pb)
    assert not d.identical and d.max_abs_diff["fc1.bias"] == pytest.approx(0.25)
    assert sum(v != 0 for v in d.max_abs_diff.values()) == 1
    assert diff_checkpoints(pa, pa).identical
    torch.save({"fc1.bias": torch.zeros(3), "extra": torch.ones(1)}, tmp_path / "c.pt")
    d2 = diff_checkpoints(pa, tmp_path / "c.pt")
    assert d2.only_b == ["extra"] and ("fc1.bias", (120,), (3,)) in d2.shape
    assert "only in B: extra" in str(d2)


def test_spec_built_model_round_trip(tmp_path: Path) -> None:
    spec = {"input": [3, 16, 16], "layers": [{"conv": {"out": 4, "kernel": 3}}, "relu", "flatten", {"linear": 5}]}
    try:
        from torchsmith.spec import build
    except ImportError:  # pragma: no cover - the spec builder ships separately
        pytest.skip("torchsmith.spec is not available")
    model = build(spec)
    assert "spec" in model.torchsmith_arch
    path = ts.save(model, tmp_path / "spec.safetensors")
    loaded = ts.load(path)
    assert loaded.torchsmith_arch == model.torchsmith_arch and _same_state(model, loaded)
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(model(x), loaded(x))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_saves_and_loads_to_cuda(tmp_path: Path) -> None:
    model = ts.create_model("lenet").cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, 3, 32, 32, device="cuda")).sum().backward()
    opt.step()
    path = ts.save(model, tmp_path / "m.safetensors", optimizer=opt, extra={"epoch": 1})
    loaded = ts.load(path, map_location="cuda")
    assert next(loaded.parameters()).is_cuda and _same_state(model, loaded)
    opt2 = torch.optim.SGD(loaded.parameters(), lr=0.1, momentum=0.9)
    assert ts.load_training_state(path, optimizer=opt2) == {"epoch": 1}
    buf = opt2.state_dict()["state"][0]["momentum_buffer"]
    assert buf.is_cuda and torch.equal(buf, opt.state_dict()["state"][0]["momentum_buffer"])


def test_lazy_model_is_sized_by_a_dry_run_before_saving(tmp_path: Path) -> None:
    model = nn.Sequential(nn.LazyLinear(3))
    with pytest.raises(ts.ConfigError, match=r"lazy \(nn.Lazy\*\) layers .* input size is not known"):
        ts.save(model, tmp_path / "lazy.safetensors")
    assert list(tmp_path.iterdir()) == []
    rng = torch.random.get_rng_state()
    ts.save(model, tmp_path / "lazy.safetensors", input_size=(4,))
    assert type(model[0]) is nn.Linear and model[0].weight.shape == (3, 4)
    assert torch.equal(rng, torch.random.get_rng_state())  # the weights come from a fork of the RNG
    fresh = nn.Sequential(nn.LazyLinear(3))
    ts.load_into(fresh, tmp_path / "lazy.safetensors")
    assert torch.equal(fresh[0].weight, model[0].weight)


def test_save_refuses_an_optimizer_or_scheduler_that_is_not_one(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    with pytest.raises(ts.CheckpointError, match="optimizer must be a torch.optim Optimizer .* not str"):
        ts.save(model, tmp_path / "m.safetensors", optimizer="adam")  # type: ignore[arg-type]
    with pytest.raises(ts.CheckpointError, match="scheduler must be .* not int"):
        ts.save(model, tmp_path / "m.safetensors", scheduler=3)
    assert list(tmp_path.iterdir()) == []


def test_convert_into_a_missing_folder_is_one_clear_error(tmp_path: Path) -> None:
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "m.pt")
    with pytest.raises(ts.CheckpointError, match="directory .*nodir does not exist"):
        convert_checkpoint(tmp_path / "m.pt", tmp_path / "nodir" / "m.safetensors")


def test_diff_counts_shared_nans_as_equal_and_sees_imaginary_parts(tmp_path: Path) -> None:
    torch.save({"a": torch.tensor([float("nan"), float("inf"), 1.0])}, tmp_path / "nan.pt")
    same = diff_checkpoints(tmp_path / "nan.pt", tmp_path / "nan.pt")
    assert same.identical and same.max_abs_diff == {"a": 0.0}
    torch.save({"c": torch.tensor([1 + 1j])}, tmp_path / "c1.pt")
    torch.save({"c": torch.tensor([1 + 3j])}, tmp_path / "c2.pt")
    differ = diff_checkpoints(tmp_path / "c1.pt", tmp_path / "c2.pt")
    assert not differ.identical and differ.max_abs_diff == {"c": 2.0}


def test_a_training_state_file_given_as_weights_names_the_weights_file(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    ts.save(model, tmp_path / "m.safetensors", extra={"epoch": 1})
    companion = tmp_path / "m.train.safetensors"
    match = r"m.train.safetensors is the training state .* of m.safetensors, not model weights"
    with pytest.raises(ts.CheckpointError, match=match):
        ts.load(companion)
    with pytest.raises(ts.CheckpointError, match=match):
        load_into(nn.Linear(2, 2), companion, strict=False)  # would "load" nothing and report success
    with pytest.raises(ts.CheckpointError, match=match):
        convert_checkpoint(companion, tmp_path / "out.safetensors")
    assert not (tmp_path / "out.safetensors").exists()
    assert checkpoint_info(companion).format.startswith("safetensors (torchsmith training state")


def test_bad_map_location_is_one_clear_error(tmp_path: Path) -> None:
    path = ts.save(nn.Linear(2, 2), tmp_path / "m.safetensors")
    with pytest.raises(ts.CheckpointError, match="map_location 'gpu' is not a device"):
        ts.load(path, map_location="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ts.CheckpointError, match="map_location 'cuda' needs CUDA"):
            ts.load(path, map_location="cuda")


def test_saving_training_state_under_a_companion_name_is_refused(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ts.CheckpointError, match=r"m.train.safetensors is the name of a training-state companion.*"
                                                 r"e.g. m.safetensors"):
        ts.save(model, tmp_path / "m.train.safetensors", optimizer=opt)
    assert list(tmp_path.iterdir()) == []


def test_content_not_the_suffix_decides_how_a_file_is_read(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    ts.save(model, tmp_path / "m.safetensors")
    (tmp_path / "st.pt").write_bytes((tmp_path / "m.safetensors").read_bytes())  # safetensors named .pt
    torch.save(model.state_dict(), tmp_path / "pickle.safetensors")  # torch.save named .safetensors
    for name in ("st.pt", "pickle.safetensors"):
        target = nn.Linear(2, 2)
        assert load_into(target, tmp_path / name).ok and torch.equal(target.weight, model.weight)
        assert checkpoint_info(tmp_path / name).num_parameters == 6
        assert diff_checkpoints(tmp_path / name, tmp_path / "m.safetensors").identical
    convert_checkpoint(tmp_path / "st.pt", tmp_path / "out.safetensors")
    with pytest.raises(ts.CheckpointError, match="torch.save.*torchsmith.load_into"):
        ts.load(tmp_path / "pickle.safetensors")


def test_module_extra_state_is_refused_with_the_reason(tmp_path: Path) -> None:
    class WithExtra(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(2, 2)

        def get_extra_state(self) -> dict:
            return {"step": 1}

        def set_extra_state(self, state: dict) -> None:
            pass

    with pytest.raises(ts.CheckpointError, match=r"'_extra_state' is a dict, not a tensor \(a module's get_extra"):
        ts.save(WithExtra(), tmp_path / "m.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_training_state_pair_is_matched_by_its_current_names(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ts.save(model, tmp_path / "last.safetensors", optimizer=opt, extra={"epoch": 1})
    for suffix in ("", ".train"):  # keep the pair as best.*
        (tmp_path / f"best{suffix}.safetensors").write_bytes((tmp_path / f"last{suffix}.safetensors").read_bytes())
    with torch.no_grad():
        model.weight.add_(1)
    ts.save(model, tmp_path / "last.safetensors", optimizer=opt, extra={"epoch": 2})
    assert ts.load_training_state(tmp_path / "best.safetensors", optimizer=opt) == {"epoch": 1}
    assert ts.load_training_state(tmp_path / "best.train.safetensors", optimizer=opt) == {"epoch": 1}
    # New weights beside old state under the new names: refused, although the recorded name is gone.
    (tmp_path / "best.safetensors").write_bytes((tmp_path / "last.safetensors").read_bytes())
    (tmp_path / "last.safetensors").unlink()
    (tmp_path / "last.train.safetensors").unlink()
    with pytest.raises(ts.CheckpointError, match="belongs to a different save of best.safetensors"):
        ts.load_training_state(tmp_path / "best.safetensors", optimizer=opt)


def test_wrapped_models_save_the_model_inside_so_load_rebuilds_it(tmp_path: Path) -> None:
    model = ts.create_model("lenet")
    for wrapped in (torch.compile(model), nn.DataParallel(model)):  # neither runs: no compilation, no GPU
        path = ts.save(wrapped, tmp_path / "m.safetensors")
        loaded = ts.load(path)
        assert type(loaded).__name__ == "LeNet" and torch.equal(loaded.fc1.weight, model.fc1.weight)


def test_a_path_that_is_not_a_path_is_one_clear_error(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    calls = [lambda: ts.save(model, None), lambda: ts.load(5), lambda: ts.load_training_state(None),
             lambda: checkpoint_info(None), lambda: diff_checkpoints(None, None),
             lambda: convert_checkpoint(None, tmp_path / "o.safetensors")]
    for call in calls:
        with pytest.raises(ts.CheckpointError, match=r"must be a file path \(str or pathlib.Path\), not"):
            call()
