"""A bounded fuzzing pass over the bad inputs every command meets: damaged data files, config
values, command-line options and output places.

The rule checked for each case: the input is either accepted, or refused with the package's
own error (DataError, ConfigError or ValueError; exit status 2 on the command line), in one
line; never another exception, never a traceback. Every case is drawn from a seeded generator,
so a failure names a case that can be replayed. The number of cases is fixed (not a time
budget); the whole file takes seconds. Each part prints "fuzz <part>: N tried, N passed".
"""

from __future__ import annotations

import gzip
import io
import math
import pickle
import random
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from deep.config import ConfigError, parse_assignment, resolve_config
from deep.datasets import DataError
from deep.datasets.cifar import read_cifar_batch
from deep.datasets.idx import read_idx
from tests.deep import fakes

CASES = 300  # per file format: each damage kind about 60 times


def _record(part: str, tried: int, passed: int, failures: list[str]) -> None:
    print(f"fuzz {part}: {tried} tried, {passed} passed")
    assert not failures, f"{len(failures)} of {tried} cases escaped: {failures[:5]}"
    assert passed == tried


def _mutate(data: bytes, rng: random.Random) -> bytes:
    """One damage of the kinds found in the field: a flipped byte, a cut, a length field
    rewritten to a huge or negative value, a duplicated or deleted span."""
    buf = bytearray(data)
    kind = rng.randrange(5)
    at = rng.randrange(len(buf))
    if kind == 0:
        buf[at] ^= 1 << rng.randrange(8)
    elif kind == 1:
        del buf[at:]
    elif kind == 2 and at + 4 <= len(buf):
        buf[at : at + 4] = struct.pack("<I", rng.choice([0xFFFFFFFF, 0x7FFFFFFF, 2**31 + 7]))
    elif kind == 3:
        span = buf[at : at + rng.randrange(1, 64)]
        buf[at:at] = span
    else:
        del buf[at : at + rng.randrange(1, 64)]
    return bytes(buf)


def _check_data(reader: Callable[[Path], object], path: Path) -> str | None:
    """None when the reader accepted the file or raised a one-line DataError."""
    try:
        reader(path)
    except DataError as exc:
        return None if "\n" not in str(exc) else f"multi-line message: {exc!r}"
    except Exception as exc:  # the defect this test exists to find
        return f"{type(exc).__name__}: {str(exc)[:80]}"
    return None


def _fuzz_file(part: str, original: bytes, reader, path: Path, seed: int) -> None:
    rng = random.Random(seed)
    failures = []
    for case in range(CASES):
        path.write_bytes(_mutate(original, rng))
        if (problem := _check_data(reader, path)) is not None:
            failures.append(f"case {case}: {problem}")
    _record(part, CASES, CASES - len(failures), failures)


def test_damaged_cifar_batches_are_data_errors(tmp_path: Path) -> None:
    folder = fakes.write_cifar10(tmp_path / "c", per_class=2, test_per_class=1)
    original = (folder / "data_batch_1").read_bytes()
    path = tmp_path / "batch"
    _fuzz_file("cifar pickles", original, lambda p: read_cifar_batch(p, b"labels", 10), path, 0)


def test_damaged_idx_files_are_data_errors(tmp_path: Path) -> None:
    labels = fakes.balanced_labels(10, 2, 0)
    raw = fakes.idx_bytes(fakes.images(labels, (28, 28), 1))
    _fuzz_file("idx files", raw, read_idx, tmp_path / "images-idx3-ubyte", 1)
    _fuzz_file("idx.gz files", gzip.compress(raw), read_idx, tmp_path / "images.gz", 2)


def _png_with_size(width: int, height: int) -> bytes:
    """A valid 1 x 1 PNG whose header claims width x height: a decompression bomb's shape."""
    png = bytearray(fakes.png_bytes(np.zeros((1, 1), dtype=np.uint8)))
    ihdr = png.index(b"IHDR")
    png[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(png[ihdr : ihdr + 17]))
    png[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(png)


def test_damaged_images_are_data_errors(tmp_path: Path) -> None:
    from PIL import Image

    from deep.datasets.folder import _read_image

    rng = random.Random(3)
    original = fakes.png_bytes(fakes.images(np.zeros(1, int), (8, 8, 3), 0)[0])
    path = tmp_path / "x.png"
    failures = []
    bombs = [_png_with_size(20000, 20000), _png_with_size(2**31 - 1, 1)]
    cases = bombs + [_mutate(original, rng) for _ in range(CASES)]
    for case, data in enumerate(cases):
        path.write_bytes(data)
        if (problem := _check_data(lambda p: _read_image(Image, p), path)) is not None:
            failures.append(f"case {case}: {problem}")
    path.write_bytes(bombs[0])
    with pytest.raises(DataError, match="decompression bomb"):
        _read_image(Image, path)
    _record("images", len(cases), len(cases) - len(failures), failures)


NUMERIC_KEYS = [
    "data.imbalance",
    "data.max_per_class",
    "optim.lr",
    "optim.momentum",
    "optim.weight_decay",
    "optim.epochs",
    "optim.batch_size",
    "optim.warmup_epochs",
    "optim.gamma",
    "optim.milestones",
    "augment.mixup_alpha",
    "augment.crop_padding",
    "head.e_w",
    "head.e_h",
    "run.nc_every",
    "run.device",
    "run.amp",
    "loss.options",
]
RAW_VALUES = [
    ".nan", ".inf", "-.inf", "-1", "0", "1e-3", "5E-4", ".5", "1_000", "1e400", "abc", "", "[]",
    "[1, 2]", "{a: 1}", "true", "null", "2**8", "0x10", "1e-3e", "--1", "1.5", "tpu", "cuda:0",
    "[.nan]", "{tau: .inf}", "99999999999999999999", "1,2", "'1e-3'", "~",
]  # fmt: skip


def test_config_values_are_accepted_or_refused_in_one_line() -> None:
    """Every (key, value) pair through --set: a Config whose numbers are finite, or ConfigError."""
    failures, tried = [], 0
    for key in NUMERIC_KEYS:
        for raw in RAW_VALUES:
            tried += 1
            try:
                k, value = parse_assignment(f"{key}={raw}")
                cfg = resolve_config("quick", [{k: value}])
            except ConfigError as exc:
                if "\n" in str(exc):
                    failures.append(f"{key}={raw}: multi-line {exc!r}")
                continue
            except Exception as exc:
                failures.append(f"{key}={raw}: {type(exc).__name__}: {exc}")
                continue
            numbers = [cfg.optim.lr, cfg.optim.momentum, cfg.optim.weight_decay, cfg.optim.gamma]
            numbers += [cfg.optim.warmup_epochs, cfg.augment.mixup_alpha, cfg.head.e_w]
            numbers += [cfg.head.e_h, *cfg.loss.options.values(), cfg.data.imbalance]
            if not all(math.isfinite(x) for x in numbers):
                failures.append(f"{key}={raw}: accepted a non-finite value")
    _record("config values", tried, tried - len(failures), failures)


def _exit_status(main: Callable[[list[str]], int], argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        return int(exc.code or 0)


def test_command_lines_exit_2_with_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    """Bad options of each command: exit status 2 and one line on stderr, before any work."""
    import benchmarks.__main__ as bench
    import proofs_checks.__main__ as checks
    from deep import table, train
    from ufm import simulate

    def never(*args, **kwargs):
        raise AssertionError("work started on a bad command line")

    monkeypatch.setattr(simulate, "run_configuration", never)
    monkeypatch.setattr(checks, "run_checks", never)
    monkeypatch.setattr(train, "build_session", never)
    monkeypatch.setattr(table, "run_cells", never)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    sim = ["--classes", "3", "--n-max", "20", "--dim", "4", "--no-figures"]
    cases: list[tuple[Callable, list[str]]] = [
        (simulate.main, [*sim, "--losses", ","]),
        (simulate.main, [*sim, "--classifiers", ""]),
        (simulate.main, [*sim, "--out", str(a_file)]),
        (simulate.main, [*sim, "--out", "/proc/x"]),
        (simulate.main, [*sim, "--out", str(tmp_path)]),
        (simulate.main, [*sim, "--imbalance", "nan"]),
        (simulate.main, [*sim, "--threads", "0"]),
        (simulate.main, [*sim, "--tol", "-1"]),
        (simulate.main, [*sim, "--dtype", "float16"]),
        (simulate.main, [*sim, "--solver", "newton"]),
        (simulate.main, [*sim, "--device", "tpu"]),
        (simulate.main, [*sim, "--max-iter", "0"]),
        (checks.main, ["--only", ","]),
        (checks.main, ["--only", "theorem9"]),
        (checks.main, ["--only", "theorem1", "--json", str(tmp_path)]),
        (checks.main, ["--only", "theorem1", "--json", "/proc/x/out.json"]),
        (checks.main, ["--threads", "0"]),
        (train.main, ["--device", "tpu", "--out", str(tmp_path / "r")]),
        (train.main, ["--set", "optim.momentum=.nan", "--out", str(tmp_path / "r")]),
        (train.main, ["--set", "optim.warmup_epochs=.inf", "--out", str(tmp_path / "r")]),
        (train.main, ["--set", "augment.mixup_alpha=.inf", "--out", str(tmp_path / "r")]),
        (train.main, ["--out", str(a_file)]),
        (train.main, ["--out", "/proc/x"]),
        (train.main, ["--threads", "0", "--out", str(tmp_path / "r")]),
        (train.main, ["--resume", str(tmp_path / "none")]),
        (train.main, ["--resume", str(a_file)]),
        (train.main, ["--epochs", "x"]),
        (table.main, ["--set", "optim.lr=abc", "--root", str(tmp_path / "t")]),
        (table.main, ["--seeds", "-1", "--root", str(tmp_path / "t")]),
        (table.main, ["--methods", ",", "--root", str(tmp_path / "t")]),
        (table.main, ["--methods", "magic", "--root", str(tmp_path / "t")]),
        (table.main, ["--imbalance", "nan", "--root", str(tmp_path / "t")]),
        (bench.main, ["nope"]),
        (bench.main, ["ufm_solvers", "--", "--bogus"]),
        (bench.main, ["ufm_solvers", "--", "--repeats", "0"]),
        (bench.main, ["ufm_solvers", "--", "--imbalance", "nan"]),
    ]
    failures = []
    for main, argv in cases:
        capsys.readouterr()
        status = _exit_status(main, argv)
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        usage = [line for line in err if not line.startswith("usage:") and line[:1] != " "]
        if status != 2 or len(usage) != 1 or "Traceback" in "\n".join(err):
            failures.append(f"{main.__module__} {argv}: exit {status}, stderr {err[-2:]}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written
    _record("command lines", len(cases), len(cases) - len(failures), failures)


def test_mutated_pickle_opcodes_never_run_code(tmp_path: Path) -> None:
    """Pickles that name globals outside the allow-list are refused, however they are spelt."""
    payloads = [pickle.dumps({b"data": _Call(eval, ("1",))}, protocol=p) for p in (2, 3, 4, 5)] + [
        pickle.dumps({b"data": _Call(io.open, ("/etc/passwd",))}, protocol=2)
    ]
    path = tmp_path / "batch"
    failures = []
    for i, data in enumerate(payloads):
        path.write_bytes(data)
        try:
            read_cifar_batch(path, b"labels", 10)
            failures.append(f"payload {i} was loaded")
        except DataError as exc:
            if "refused to load" not in str(exc):
                failures.append(f"payload {i}: {exc}")
    _record("code-running pickles", len(payloads), len(payloads) - len(failures), failures)


class _Call:
    def __init__(self, fn, args) -> None:
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def test_damaged_run_folders_resume_or_refuse(tmp_path: Path, capsys) -> None:
    """--resume on a finished run whose config.yaml or last.pt was damaged: exit 0 (nothing to
    do) or 2 with one line; never a traceback, and the results are never touched."""
    from deep.train import main
    from tests.deep.test_train import _args

    root = fakes.write_idx_dataset(tmp_path / "data")
    run = tmp_path / "run"
    assert main(_args("fashion-mnist", root, run, "--epochs", "1")) == 0
    results = {name: (run / name).read_bytes() for name in ("history.csv", "summary.json")}
    rng = random.Random(4)
    failures, tried = [], 0
    for name in ("config.yaml", "checkpoints/last.pt"):
        path = run / name
        original = path.read_bytes()
        for case in range(30):
            tried += 1
            path.write_bytes(_mutate(original, rng))
            capsys.readouterr()
            try:
                status = main(["--resume", str(run), "--no-figures", "--no-progress"])
            except Exception as exc:
                failures.append(f"{name} case {case}: {type(exc).__name__}: {str(exc)[:80]}")
                continue
            err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
            if status not in (0, 2) or len(err) > 1 or (status == 2) != (len(err) == 1):
                failures.append(f"{name} case {case}: exit {status}, stderr {err[-2:]}")
            changed = [n for n, data in results.items() if (run / n).read_bytes() != data]
            if changed:
                failures.append(f"{name} case {case}: {changed} rewritten")
                for n in changed:
                    (run / n).write_bytes(results[n])
        path.write_bytes(original)
    _record("damaged run folders", tried, tried - len(failures), failures)
