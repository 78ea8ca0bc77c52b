"""The C++ refiner reproduces the reference DDIM inpainting loop.

``drdc_trt.methods.drdc.refiner.csrc_inpaint_heat`` (C++ loop, Python network through a
``_C.PythonRunner``) against ``drdc_trt.diffusion.inpaint_heat`` (PyTorch
loop) with the same noise, labels, schedule and network. Tolerance: on the
CPU the fused kernels are bit-identical to the reference's element-wise
math, so the final states match exactly and the heat sums to within 1e-5
(a different summation order of the same terms). On CUDA (torch's
reciprocal-multiply for scalar division) the states agree to 1e-4 with fp32
network buffers (TF32 off) and to 2e-3 with fp16 ones.

The analytic runner (ε = the true noise of x_t) checks the loop on its own:
it must give the input back exactly.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from drdc_trt.methods.drdc.inpaint import LoopNoise, inpaint_heat
from drdc_trt.schedule import Schedule
from drdc_trt.methods.drdc.masks import grid_labels
from drdc_trt.methods.drdc.refiner import csrc_inpaint_heat

from drdc_trt import _C  # a required part of the package: missing is a failure, not a skip

_cuda = torch.cuda.is_available() and _C.build_info["cuda"]
if os.environ.get("DRDC_REQUIRE_CUDA") == "1" and not _cuda:  # set by scripts/gpu_check.sh
    raise RuntimeError("DRDC_REQUIRE_CUDA=1 but torch sees no GPU or _C was built without CUDA")
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
        not _cuda, reason="needs a CUDA GPU and a CUDA build of drdc_trt._C")]),
]


class TinyEps(torch.nn.Module):
    """A fixed random network standing in for the U-Net: ε̂ = conv(x_t‖c)·(1 + t/1000)."""

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(6, 3, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.2)
            self.conv.bias.copy_(torch.randn(3, generator=g) * 0.1)

    @torch.no_grad()
    def forward(self, unet_in: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.conv(unet_in.float()) * (1 + t.float().view(-1, 1, 1, 1) / 1000)


@pytest.fixture
def no_tf32():
    """The test network's conv in true fp32 on a GPU (cuDNN's default allows TF32, whose
    ~1e-3 relative error would swamp the 1e-4 comparison of the two loops)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _setup(device, b=2, size=32, grids=(4, 8), k=2, steps=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(b, 3, size, size, generator=g) * 2 - 1).to(device)
    labels = grid_labels(size, grids, k, seed=seed).to(device)
    noise = LoopNoise.draw(b * len(grids) * k, size, steps, generator=g, device=device)
    return x, labels, noise


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("net_dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("pool,clip", [((1, 2), True), ((1,), False), ((2, 4, 8), True)])
def test_csrc_loop_matches_reference(device, net_dtype, pool, clip, no_tf32):
    steps, k = 4, 2
    x, labels, noise = _setup(device, steps=steps, k=k)
    net = TinyEps().to(device)
    schedule = Schedule.linear()
    ref = inpaint_heat(x, labels, k, net, schedule, 200, steps, noise, pool, clip, net_dtype, impl="torch")
    got = csrc_inpaint_heat(x, labels, k, net, schedule, 200, steps, noise, pool, clip, net_dtype)
    assert got.count == ref.count == steps * labels.shape[0] * len(pool)
    if device == "cpu" and net_dtype == torch.float32:
        # the step kernels keep the float32 bound of the exact step (test_csrc_kernels: ~16 u of
        # |x_t|), not torch's bits; four steps through the small conv stay within 1e-5
        torch.testing.assert_close(got.xt, ref.xt, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.heat, ref.heat, atol=1e-5, rtol=1e-5)
    elif net_dtype == torch.float32:
        torch.testing.assert_close(got.xt, ref.xt, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got.heat, ref.heat, atol=1e-3, rtol=1e-4)
    else:
        # fp16 network buffers: a one-ulp difference in a rounded input (~5e-4 near 1) passes
        # through the conv and x̂0 = (x_t − √(1−ᾱ)ε̂)/√ᾱ; ~2e-4 on x_t is expected
        torch.testing.assert_close(got.xt, ref.xt, atol=2e-3, rtol=1e-3)
        torch.testing.assert_close(got.heat, ref.heat, atol=1e-2, rtol=1e-3)
    assert ref.heat.abs().sum() > 0  # a real, non-trivial heat map


def test_eps_fn_sees_the_loop_buffers():
    """The callback gets the exact network input of the reference loop, each step."""
    x, labels, noise = _setup("cpu", steps=3)
    seen_ref, seen_c = [], []

    def recorder(store):
        net = TinyEps(1)

        def fn(u, t):
            store.append((u.clone(), t.clone()))
            return net(u, t)

        return fn

    s = Schedule.linear()
    inpaint_heat(x, labels, 2, recorder(seen_ref), s, 150, 3, noise, (1, 2), impl="torch")
    csrc_inpaint_heat(x, labels, 2, recorder(seen_c), s, 150, 3, noise, (1, 2))
    assert len(seen_c) == len(seen_ref) == 3
    for (u_r, t_r), (u_c, t_c) in zip(seen_ref, seen_c):
        assert torch.equal(t_c, t_r)  # integer timesteps
        assert torch.equal(u_c[:, 3:], u_r[:, 3:])  # the condition: a copy of x / the fill noise
        torch.testing.assert_close(u_c[:, :3], u_r[:, :3], atol=1e-5, rtol=1e-5)  # x_t: float rounding


@pytest.mark.parametrize("device", DEVICES)
def test_refiner_is_built_once_per_batch_and_calls_the_current_network(device):
    """The C++ refiner (and its buffers) is cached per batch and settings; a cached one calls
    the network of the current call, and the results equal a freshly built one's."""
    from drdc_trt.methods.drdc import refiner as R

    x, labels, noise = _setup(device, b=2, steps=3)
    s, nets = Schedule.linear(), [TinyEps(0).to(device), TinyEps(1).to(device)]
    calls = []

    def counted(i):
        def fn(u, t):
            calls.append(i)
            return nets[i](u, t)
        return fn

    before = R.cache_info()
    first = csrc_inpaint_heat(x, labels, 2, counted(0), s, 150, 3, noise, (1, 2))
    again = csrc_inpaint_heat(x, labels, 2, counted(0), s, 150, 3, noise, (1, 2))
    other = csrc_inpaint_heat(x, labels, 2, counted(1), s, 150, 3, noise, (1, 2))
    after = R.cache_info()
    assert after["built"] - before["built"] == 1 and after["reused"] - before["reused"] == 2
    assert calls == [0] * 3 + [0] * 3 + [1] * 3
    assert torch.equal(first.xt, again.xt) and torch.equal(first.heat, again.heat)
    ref = inpaint_heat(x, labels, 2, nets[1], s, 150, 3, noise, (1, 2), impl="torch")
    torch.testing.assert_close(other.xt, ref.xt, atol=1e-4, rtol=1e-4)
    # another batch size, or other labels, get their own refiner
    x1, labels1, noise1 = _setup(device, b=1, steps=3)
    csrc_inpaint_heat(x1, labels, 2, counted(0), s, 150, 3, noise1, (1, 2))
    csrc_inpaint_heat(x1, labels1, 2, counted(0), s, 150, 3, noise1, (1, 2))
    assert R.cache_info()["built"] - after["built"] == 2
    held = R.cache_info()["held"]
    del labels1
    assert R.cache_info()["held"] == held - 1  # dropped with the labels tensor it was built for
    R.clear_cache()
    assert R.cache_info()["held"] == 0


def test_eps_fn_shape_error_is_clear():
    x, labels, noise = _setup("cpu", steps=2)
    with pytest.raises(ValueError, match="eps_fn returned shape"):
        csrc_inpaint_heat(x, labels, 2, lambda u, t: u[:, :2], Schedule.linear(), 100, 2, noise, (1,))


def _analytic_refiner(device, x, labels_np, k, steps, t0, pool, net_dtype="float32", cuda_graph=True):
    b, _, size, _ = x.shape
    runner = _C.AnalyticRunner(device=device, net_dtype=net_dtype, x=x.data_ptr(), batch=b,
                               rows_per_image=labels_np.shape[0] * k, height=size, width=size)
    return _C.Refiner(runner, device=device, batch=b, height=size, width=size, num_sets=k, t0=t0,
                      num_steps=steps, pool_factors=list(pool), labels=labels_np, cuda_graph=cuda_graph)


@pytest.mark.parametrize("device", DEVICES)
def test_analytic_runner_recovers_input(device):
    x, labels, noise = _setup(device, b=3, size=32, grids=(4, 8, 16), k=3, steps=10)
    refiner = _analytic_refiner(device, x, labels.cpu().numpy(), 3, 10, 250, (1, 2))
    heat = torch.full((3, 32, 32), float("nan"), device=device)
    xt = torch.empty(refiner.rows, 3, 32, 32, device=device)
    count = refiner.run(x=x.data_ptr(), heat=heat.data_ptr(), xt_out=xt.data_ptr(), fill=noise.fill.data_ptr(),
                        start=noise.start.data_ptr(), steps=noise.steps.data_ptr(),
                        stream=torch.cuda.current_stream().cuda_stream if device == "cuda" else 0)
    if device == "cuda":
        torch.cuda.synchronize()
    assert count == 10 * 3 * 2
    torch.testing.assert_close(xt, x.repeat_interleave(9, dim=0), atol=2e-6, rtol=0)
    assert heat.max().item() < 1e-4 * count and heat.min().item() >= 0


def test_refiner_generates_the_python_labels_and_schedule():
    runner = _C.PythonRunner(lambda *a: None, device="cpu")
    r = _C.Refiner(runner, device="cpu", batch=1, height=64, width=64, num_sets=3, t0=250, num_steps=10,
                   pool_factors=[1, 2], grid_sizes=[8, 16], seed=77)
    assert np.array_equal(r.labels, grid_labels(64, (8, 16), 3, seed=77).numpy())
    assert r.timesteps == [250, 225, 200, 175, 150, 125, 100, 75, 50, 25]
    assert r.rows == 6 and r.count == 10 * 2 * 2


def test_generated_noise_is_seeded():
    """Without noise buffers the refiner draws its own: reproducible per seed, fresh per run."""
    x, labels, _ = _setup("cpu", b=1, size=16, grids=(4,), k=2)
    out = []
    for _ in range(2):
        r = _analytic_refiner("cpu", x, labels.numpy(), 2, 3, 100, (1,))
        r.set_noise_seed(5)
        heats = []
        for _ in range(2):
            heat = torch.empty(1, 16, 16)
            xt = torch.empty(2, 3, 16, 16)
            r.run(x=x.data_ptr(), heat=heat.data_ptr(), xt_out=xt.data_ptr())
            torch.testing.assert_close(xt, x.repeat(2, 1, 1, 1), atol=2e-6, rtol=0)
            heats.append(heat)
        out.append(heats)
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
    assert not torch.equal(out[0][0], out[0][1])


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda, reason="needs a CUDA GPU and a CUDA build of drdc_trt._C")
def test_cuda_graph_replay_matches_eager():
    x, labels, noise = _setup("cuda", b=2, size=32, grids=(4, 8), k=2, steps=5)
    eager = _analytic_refiner("cuda", x, labels.cpu().numpy(), 2, 5, 200, (1, 2), cuda_graph=False)
    graph = _analytic_refiner("cuda", x, labels.cpu().numpy(), 2, 5, 200, (1, 2), cuda_graph=True)
    stream = torch.cuda.Stream()
    outs = []
    for r, runs in ((eager, 1), (graph, 3)):
        heat = torch.empty(2, 32, 32, device="cuda")
        xt = torch.empty(r.rows, 3, 32, 32, device="cuda")
        for _ in range(runs):
            heat.fill_(float("nan"))
            stream.wait_stream(torch.cuda.current_stream())
            r.run(x=x.data_ptr(), heat=heat.data_ptr(), xt_out=xt.data_ptr(), fill=noise.fill.data_ptr(),
                  start=noise.start.data_ptr(), steps=noise.steps.data_ptr(), stream=stream.cuda_stream)
            stream.synchronize()
        outs.append((heat.clone(), xt.clone()))
    assert graph.graph_captures == 1 and graph.graph_replays == 1 and graph.graph_error == ""
    assert eager.graph_captures == 0
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
