"""Resume mistakes and bad output places: one message, exit status 2, nothing overwritten."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from deep.train import main
from tests.deep import fakes
from tests.deep.test_train import _args
from ufm.runfolder import read_run


def _err_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("deep.train: error:")
    return err[0]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished(idx_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished one-epoch run; each test damages a copy of it."""
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(_args("fashion-mnist", idx_root, out, "--epochs", "1")) == 0
    return out


def _copy(src: Path, dst: Path) -> Path:
    for p in src.rglob("*"):
        if p.is_file():
            (dst / p.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            (dst / p.relative_to(src)).write_bytes(p.read_bytes())
    return dst


def test_the_checkpoint_records_the_resolved_config(finished: Path) -> None:
    ckpt = torch.load(finished / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["config"]["optim.lr"] == pytest.approx(0.1)
    assert ckpt["config"]["model.arch"] == "resnet8"


def test_an_edited_config_is_refused_naming_the_key(finished, tmp_path, capsys) -> None:
    run = _copy(finished, tmp_path / "run")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace("lr: 0.1", "lr: 0.05"))
    before = _snapshot(run)
    assert main(["--resume", str(run), "--no-figures"]) == 2
    line = _err_line(capsys)
    assert "optim.lr: 0.1 in the checkpoint, 0.05 in config.yaml" in line
    assert _snapshot(run) == before


def test_a_checkpoint_copied_from_another_run_is_refused(finished, tmp_path, capsys) -> None:
    run = _copy(finished, tmp_path / "run")
    last = run / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    ckpt["config"]["optim.lr"] = 0.3
    for group in ckpt["optimizer"]["param_groups"]:
        group["initial_lr"] = 0.3
    torch.save(ckpt, last)
    assert main(["--resume", str(run), "--no-figures"]) == 2
    assert "optim.lr: 0.3 in the checkpoint, 0.1 in config.yaml" in _err_line(capsys)
    # A checkpoint written before configs were saved is judged by its optimizer.
    del ckpt["config"]
    torch.save(ckpt, last)
    assert main(["--resume", str(run), "--no-figures"]) == 2
    assert "optim.lr: 0.3 in the checkpoint" in _err_line(capsys)


def test_another_architecture_is_one_message(finished, tmp_path, capsys) -> None:
    run = _copy(finished, tmp_path / "run")
    last = run / "checkpoints" / "last.pt"
    ckpt = torch.load(last, weights_only=True)
    del ckpt["config"]  # only the weights tell: the message must still be one line
    conv = next(k for k, v in ckpt["model"].items() if v.ndim == 4)
    ckpt["model"][conv] = torch.zeros(3, 3, 3, 3)  # as a wider network would have it
    torch.save(ckpt, last)
    assert main(["--resume", str(run), "--no-figures"]) == 2
    assert "does not fit the network" in _err_line(capsys)


def test_results_without_a_checkpoint_are_not_overwritten(finished, tmp_path, capsys) -> None:
    run = _copy(finished, tmp_path / "run")
    (run / "checkpoints" / "last.pt").unlink()
    before = _snapshot(run)
    assert main(["--resume", str(run), "--no-figures"]) == 2
    assert "would restart at epoch 1 and overwrite them" in _err_line(capsys)
    assert _snapshot(run) == before


def test_a_run_reruns_from_its_config_yaml(finished, tmp_path) -> None:
    again = tmp_path / "again"
    assert main(["--config", str(finished / "config.yaml"), "--out", str(again)]) == 0
    first, second = read_run(finished), read_run(again)
    assert second.config["run"].pop("out") == str(again)
    assert first.config["run"].pop("out") == str(finished)
    assert first.config == second.config
    assert first.summary["last_test_acc"] == second.summary["last_test_acc"]


def test_a_run_folder_of_an_older_layout_resumes_in_its_own_layout(idx_root, tmp_path) -> None:
    """A folder written before run.json (metrics.csv for history.csv) goes on writing
    metrics.csv and gets no run.json: it stays a whole legacy folder that readers know."""
    out = tmp_path / "run"
    args = _args("fashion-mnist", idx_root, out, "--epochs", "2", "--set", "run.save_every=1")
    assert main(args) == 0
    command = json.loads((out / "run.json").read_text())["command"]
    assert command[:3] == ["python", "-m", "deep.train"] and "--epochs" in command
    (out / "run.json").unlink()
    (out / "history.csv").rename(out / "metrics.csv")
    first = (out / "checkpoints" / "epoch_0001.pt").read_bytes()
    (out / "checkpoints" / "last.pt").write_bytes(first)  # back to the end of epoch 1
    lines = (out / "metrics.csv").read_text().splitlines()
    (out / "metrics.csv").write_text("\n".join(lines[:2]) + "\n")
    assert read_run(out).kind == "deep" and read_run(out).format == 0
    assert main(["--resume", str(out), "--no-figures"]) == 0
    assert not (out / "history.csv").exists() and not (out / "run.json").exists()
    assert (out / "metrics.csv").read_text().splitlines()[0] == lines[0]
    assert len((out / "metrics.csv").read_text().splitlines()) == 3  # header and 2 epochs
    run = read_run(out)
    assert run.summary["epochs_done"] == 2 and list(run.history.column("epoch")) == [1, 2]


class _Payload:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("damage", ["yaml", "missing-key", "pickle", "truncated"])
def test_damaged_files_are_one_message(finished, tmp_path, capsys, damage) -> None:
    run = _copy(finished, tmp_path / "run")
    last = run / "checkpoints" / "last.pt"
    if damage == "yaml":
        (run / "config.yaml").write_text("optim: {lr: 0.1\nrun: [")
    elif damage == "missing-key":
        ckpt = torch.load(last, weights_only=True)
        del ckpt["optimizer"]
        torch.save(ckpt, last)
    elif damage == "pickle":
        last.write_bytes(pickle.dumps({"format": 1, "model": _Payload()}, protocol=2))
    else:
        last.write_bytes(last.read_bytes()[:1000])
    before = _snapshot(run)
    assert main(["--resume", str(run), "--no-figures"]) == 2
    line = _err_line(capsys)
    expected = {
        "yaml": "is not readable YAML",
        "missing-key": "it lacks optimizer",
        "pickle": "is not a checkpoint of this package",
        "truncated": "is not a checkpoint of this package",
    }[damage]
    assert expected in line
    assert "weights_only" not in line
    assert _snapshot(run) == before


def test_out_that_cannot_be_a_run_folder(idx_root, tmp_path, capsys) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("mine")
    for out, message in ((a_file, "is a file, not a folder"), (Path("/proc/x"), "cannot write")):
        assert main(_args("fashion-mnist", idx_root, out)) == 2
        assert message in _err_line(capsys)
    assert a_file.read_text() == "mine"


def test_a_failed_download_leaves_no_empty_folders(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = ["--out", str(tmp_path / "r1"), "--no-figures", "--set", "data.verify=false"]
    # No network here, or a refused one: the download fails either way.
    monkeypatch.setattr("deep.datasets.download._download", _offline)
    assert main(["--dataset", "cifar10", *args]) == 2
    assert "CIFAR-10 not found" in _err_line(capsys)
    assert not (tmp_path / "data").exists()
    missing = tmp_path / "x" / "y"
    assert main(["--dataset", "fashion-mnist", "--data-root", str(missing), *args]) == 2
    assert "Fashion-MNIST not found" in _err_line(capsys)
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _offline(*args, **kwargs):
    import urllib.error

    raise urllib.error.URLError("network is unreachable")


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("optim.lr=1e-3", 1e-3),
        ("optim.weight_decay=5E-4", 5e-4),
        ("optim.lr=.5", 0.5),
        ("optim.epochs=1_000", 1000),
        ("optim.epochs=1e3", 1000),
    ],
)
def test_every_spelling_of_a_number_is_accepted(setting, value) -> None:
    from deep.config import parse_assignment, resolve_config

    key, raw = parse_assignment(setting)
    cfg = resolve_config("quick", [{key: raw}])
    section, name = key.split(".")
    assert getattr(getattr(cfg, section), name) == value


def test_a_yaml_file_with_exponent_floats_loads(idx_root, tmp_path, capsys) -> None:
    path = tmp_path / "my.yaml"
    path.write_text("optim:\n  weight_decay: 5e-4\n  lr: 1e-2\n")
    assert main(["--config", str(path), "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "weight_decay: 0.0005" in text and "lr: 0.01" in text


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("optim.momentum=.nan", "optim.momentum must be in [0, 1)"),
        ("optim.momentum=1.5", "optim.momentum must be in [0, 1)"),
        ("optim.gamma=.nan", "optim.gamma must be a finite number > 0"),
        ("optim.weight_decay=.nan", "optim.weight_decay must be a finite number >= 0"),
        ("augment.mixup_alpha=.inf", "augment.mixup_alpha must be a finite number >= 0"),
        ("optim.warmup_epochs=.inf", "optim.warmup_epochs must be a finite number >= 0"),
        ("head.e_h=-1", "head.e_h must be a finite number > 0"),
        ("loss.options={tau: .nan}", "loss.options must be finite numbers"),
        ("optim.milestones=[0]", "optim.milestones must be epochs >= 1"),
        ("run.device=tpu", "run.device must be auto, cpu, cuda or cuda:N"),
        ("optim.lr=abc", "optim.lr must be float, got 'abc'"),
    ],
)
def test_out_of_range_values_are_refused_before_anything_runs(
    idx_root, tmp_path, capsys, setting, message
) -> None:
    out = tmp_path / "run"
    assert main(_args("fashion-mnist", idx_root, out, "--set", setting)) == 2
    assert message in _err_line(capsys)
    assert not out.exists()


def test_device_tpu_is_one_message(idx_root, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(_args("fashion-mnist", idx_root, out, "--device", "tpu")) == 2
    assert "run.device must be auto, cpu, cuda or cuda:N, got 'tpu'" in _err_line(capsys)
    assert not out.exists()


def test_a_decompression_bomb_in_a_folder_dataset_is_one_message(tmp_path, capsys) -> None:
    from tests.test_fuzz_bad_inputs import _png_with_size

    root = fakes.write_folder_dataset(tmp_path / "folder")
    (root / "train" / "cat" / "0.png").write_bytes(_png_with_size(20000, 20000))  # 4e8 pixels
    out = tmp_path / "run"
    assert main(_args("folder", root, out)) == 2
    line = _err_line(capsys)
    assert "cannot read image" in line and "decompression bomb" in line
    assert not out.exists()


def test_ctrl_c_while_the_data_loads_is_one_message(idx_root, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("deep.train.build_session", interrupted)
    out = tmp_path / "run"
    assert main(_args("fashion-mnist", idx_root, out)) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["deep.train: interrupted before the first epoch"]
    assert not out.exists()


def test_moving_the_data_is_not_a_config_change(finished, tmp_path, idx_root) -> None:
    run = _copy(finished, tmp_path / "run")
    data = _copy(idx_root, tmp_path / "moved-data")
    config = run / "config.yaml"
    config.write_text(config.read_text().replace(str(idx_root), str(data)))
    assert str(data) in config.read_text()
    assert main(["--resume", str(run), "--no-figures"]) == 0  # finished: nothing to do


def test_a_cuda_index_beyond_the_gpus_is_one_message(monkeypatch) -> None:
    from deep.distributed import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as on a 2-GPU machine
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"'cuda:2' asked for, but this machine shows 2 GPU"):
        resolve_device("cuda:2")
