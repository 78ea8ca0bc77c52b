"""Bad command-line options and arguments are refused clearly: exit status 2, the culprit on stderr.

Rows of the bad-input table (bad_inputs.py: the contract, the row type, the table's test):
``drdc train|detect|export|calibrate|ablate|synth`` and ``python -m drdc_trt.runtime``, run in-process.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np

from bad_inputs import S, Case, CliFailed, _MakesFolder, _rgb, refusal_test, registrar

CASES: list[Case] = []
case = registrar(CASES)


# --------------------------------------------------------------------------- builders
def _cli(*args: str) -> None:
    """``drdc ARGS`` in-process; raises CliFailed(code, stderr) on a non-zero exit."""
    from drdc_trt.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(list(args), prog_name="drdc", standalone_mode=True)
            code = 0
        except SystemExit as e:
            code = e.code
    if code:
        raise CliFailed(code, err.getvalue())


def _runtime_cli(*args: str) -> None:
    """``python -m drdc_trt.runtime ARGS`` in-process; raises CliFailed(code, stderr) on a non-zero exit."""
    from drdc_trt.runtime.__main__ import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(args))
        except SystemExit as e:
            code = e.code
    if code:
        raise CliFailed(code, err.getvalue())


# --------------------------------------------------------------------------- drdc command line
@case("cli-train-negative-iterations", CliFailed, "--set", "train.unet_iters=-5")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "train.unet_iters=-5")


@case("cli-train-lambda-above-one", CliFailed, "--set", "fusion.lam")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "fusion.lam=1.5")


@case("cli-train-lambda-negative", CliFailed, "--set", "fusion.lam")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "fusion.lam=-0.1")


@case("cli-train-batch-zero", CliFailed, "--set", "train.batch_size=0")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "train.batch_size=0")


@case("cli-train-pool-factor-zero", CliFailed, "--set", "fusion.pool_factors=[0]")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "fusion.pool_factors=[0]")


@case("cli-train-grid-size-zero", CliFailed, "--set", "diffusion.grid_sizes=[4, 0]")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "diffusion.grid_sizes=[4,0]")


@case("cli-train-image-size-not-a-number", CliFailed, "--set", "image_size", "'big'")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "tiny",
         "--set", "image_size=big")


@case("cli-train-unknown-preset", CliFailed, "--preset", "'huge'")
def _(env):
    _cli("train", "--data", str(env.data()), "--out", str(env.path("o")), "--preset", "huge")


@case("cli-train-missing-data", CliFailed, "no_data", "does not exist")
def _(env):
    _cli("train", "--data", str(env.path("no_data")), "--out", str(env.path("o")), "--preset", "tiny", "--quiet")


@case("cli-detect-unknown-backend", CliFailed, "--backend", "'tflite'")
def _(env):
    _cli("detect", "--model", str(env.path("m")), "--backend", "tflite", str(_rgb(env.path("a.png"))))


@case("cli-detect-batch-zero", CliFailed, "--batch-size", "0")
def _(env):
    _cli("detect", "--model", str(env.path("m")), "--batch-size", "0", str(_rgb(env.path("a.png"))))


@case("cli-detect-negative-seed", CliFailed, "--seed", "-3")
def _(env):
    _cli("detect", "--model", str(env.path("m")), "--seed", "-3", str(_rgb(env.path("a.png"))))


@case("cli-detect-missing-image", CliFailed, "gone.png", "no such file")
def _(env):
    _cli("detect", "--model", str(env.path("m")), str(env.path("gone.png")))


@case("cli-detect-corrupt-image", CliFailed, "broken.png", "unreadable image")
def _(env):
    env.path("imgs").mkdir()
    _rgb(env.path("imgs") / "fine.png")
    (env.path("imgs") / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnothing more")
    _cli("detect", "--model", str(env.checkpoint()), "--out", str(env.path("out")), str(env.path("imgs")))


@case("cli-detect-out-is-a-file", CliFailed, "--out", "results.txt", "is a file, not a folder")
def _(env):
    env.path("results.txt").write_text("kept")
    try:
        _cli("detect", "--model", str(env.checkpoint()), "--out", str(env.path("results.txt")),
             str(_rgb(env.path("a.png"))))
    finally:
        assert env.path("results.txt").read_text() == "kept"  # nothing written over it


@case("cli-export-max-batch-zero", CliFailed, "--max-batch", "0")
def _(env):
    _cli("export", "--model", str(env.path("m")), "--out", str(env.path("b")), "--max-batch", "0")


@case("cli-export-opset-out-of-range", CliFailed, "--opset", "9")
def _(env):
    _cli("export", "--model", str(env.path("m")), "--out", str(env.path("b")), "--opset", "9")


@case("cli-export-check-batch-zero", CliFailed, "--check-batches", "'1,0'")
def _(env):
    _cli("export", "--model", str(env.path("m")), "--out", str(env.path("b")), "--check-batches", "1,0")


@case("cli-export-missing-checkpoint", CliFailed, "no_ckpt", "model.safetensors")
def _(env):
    _cli("export", "--model", str(env.path("no_ckpt")), "--out", str(env.path("b")))


@case("cli-calibrate-lambda-out-of-range", CliFailed, "fusion.lam")
def _(env):
    _cli("calibrate", "--model", str(env.checkpoint()), "--data", str(env.data()), "--out", str(env.path("c")),
         "--set", "fusion.lam=2", "--set", "fusion.select=fixed", "--quiet")


@case("cli-calibrate-training-setting", CliFailed, "train.unet_iters", "not inference settings")
def _(env):
    _cli("calibrate", "--model", str(env.checkpoint()), "--data", str(env.data()), "--out", str(env.path("c")),
         "--set", "train.unet_iters=9", "--quiet")


@case("cli-ablate-lambda-out-of-range", CliFailed, "--lams", "[0, 1]")
def _(env):
    _cli("ablate", "--model", str(env.path("m")), "--data", str(env.path("d")), "--work", str(env.path("w")),
         "--lams", "0,1.2")


@case("cli-synth-size-zero", CliFailed, "--size", "0")
def _(env):
    _cli("synth", "--out", str(env.path("s")), "--size", "0")


@case("runtime-cli-pickled-images", CliFailed, "images.npy", "allow_pickle")
def _(env):
    marker = env.path("unpickled")
    with open(env.path("images.npy"), "wb") as fh:
        np.save(fh, np.array([_MakesFolder(str(marker))], dtype=object), allow_pickle=True)
    try:
        _runtime_cli(str(env.bundle()), str(env.path("images.npy")), "--out", str(env.path("r.npz")))
    finally:
        assert not marker.exists(), "the runtime unpickled the images file"


@case("runtime-cli-batch-zero", CliFailed, "--batch-size", "0")
def _(env):
    np.save(env.path("images.npy"), np.zeros((1, 3, S, S), np.float32))
    _runtime_cli(str(env.bundle()), str(env.path("images.npy")), "--out", str(env.path("r.npz")),
                 "--batch-size", "0")


@case("runtime-cli-missing-bundle", CliFailed, "no_bundle", "no such folder")
def _(env):
    np.save(env.path("images.npy"), np.zeros((1, 3, S, S), np.float32))
    _runtime_cli(str(env.path("no_bundle")), str(env.path("images.npy")), "--out", str(env.path("r.npz")))


# --------------------------------------------------------------------------- the table
test_bad_input_is_refused_clearly = refusal_test(CASES)
