"""Invalid calls into the compiled core raise clear Python errors, never crash."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from drdc_trt.methods.drdc import ops
from drdc_trt.schedule import Schedule
from drdc_trt.methods.drdc.masks import grid_labels

from drdc_trt import _C  # a required part of the package: missing is a failure, not a skip


def _problem(b=1, size=8, k=2):
    labels = grid_labels(size, (4,), k, seed=0)
    n = b * k
    return dict(x=torch.rand(b, 3, size, size) * 2 - 1, labels=labels, k=k,
                fill=torch.randn(n, 3, size, size), eps0=torch.randn(n, 3, size, size),
                xt=torch.randn(n, 3, size, size), eps=torch.randn(n, 3, size, size),
                noise=torch.randn(n, 3, size, size), unet_in=torch.zeros(n, 6, size, size),
                heat=torch.zeros(b, size, size))


def _step(p, **over):
    a = {**p, **over}
    return ops.step(a["x"], a["labels"], a["k"], a["xt"], a["eps"], a["noise"], a["unet_in"], a["heat"],
                    0.8, 0.6, 0.9, 0.43, a.get("pool", [1, 2]), impl="csrc")


def test_wrong_dtype():
    p = _problem()
    with pytest.raises(TypeError, match="x: dtype torch.float64"):
        _step(p, x=p["x"].double())
    with pytest.raises(TypeError, match="labels: dtype torch.int64"):
        _step(p, labels=p["labels"].long())
    with pytest.raises(TypeError, match="eps: dtype torch.float16"):  # eps must share unet_in's dtype
        _step(p, eps=p["eps"].half())
    with pytest.raises(TypeError, match="net_dtype"):
        ops.prepare(p["x"], p["labels"], 2, p["fill"], p["eps0"], 0.8, 0.6, torch.bfloat16, impl="csrc")


def test_wrong_shape():
    p = _problem()
    with pytest.raises(ValueError, match="noise: shape"):
        _step(p, noise=p["noise"][:1])
    with pytest.raises(ValueError, match="x: expected B×3×H×W"):
        _step(p, x=p["x"][:, :2])
    with pytest.raises(ValueError, match="pool factor 3"):
        _step(p, pool=[3])
    with pytest.raises(ValueError, match="1 to 4 factors"):
        _step(p, pool=[1, 1, 1, 1, 1])
    with pytest.raises(ValueError, match="mean_filter"):
        ops.fuse(p["heat"], 4, torch.rand(1, 2, 2), 4, (0, 1, 0, 1), 0.9, 4, impl="csrc")
    with pytest.raises(ValueError, match="score_window"):
        ops.fuse(p["heat"], 4, torch.rand(1, 2, 2), 3, (0, 1, 0, 1), 0.9, 9, impl="csrc")


def test_non_contiguous():
    p = _problem()
    xt = p["xt"].transpose(2, 3)
    assert not xt.is_contiguous()
    with pytest.raises(ValueError, match="xt: must be contiguous"):
        _step(p, xt=xt)


def test_wrong_device():
    p = _problem()
    with pytest.raises(ValueError, match="heat: on meta"):
        _step(p, heat=torch.empty(1, 8, 8, device="meta"))
    with pytest.raises(ValueError, match="device 'tpu'"):
        _C.step(device="tpu", x=1, labels=1, xt_in=1, eps=1, noise=1, xt_out=2, unet_in=1, heat=1, B=1, J=1,
                K=1, H=1, W=1, sqrt_ab=1.0, sqrt_1mab=0.0, sqrt_ab_next=1.0, sqrt_1mab_next=0.0, pool_factors=[1])


def test_null_pointers_and_bad_sizes_in_direct_calls():
    p = _problem()
    kw = dict(device="cpu", x=p["x"].data_ptr(), labels=p["labels"].data_ptr(), fill_noise=p["fill"].data_ptr(),
              eps0=p["eps0"].data_ptr(), xt=p["xt"].data_ptr(), unet_in=p["unet_in"].data_ptr(),
              B=1, J=1, K=2, H=8, W=8, sqrt_ab=0.8, sqrt_1mab=0.6)
    _C.prepare(**kw)  # valid
    with pytest.raises(ValueError, match="fill_noise is a null pointer"):
        _C.prepare(**{**kw, "fill_noise": 0})
    with pytest.raises(ValueError, match="every dimension must be >= 1"):
        _C.prepare(**{**kw, "K": 0})
    with pytest.raises(ValueError, match="net dtype 'int8'"):
        _C.prepare(**{**kw, "net_dtype": "int8"})
    with pytest.raises(ValueError, match="must not alias"):
        _C.step(device="cpu", x=1, labels=1, xt_in=5, eps=1, noise=1, xt_out=5, unet_in=1, heat=1, B=1, J=1,
                K=1, H=1, W=1, sqrt_ab=1.0, sqrt_1mab=0.0, sqrt_ab_next=1.0, sqrt_1mab_next=0.0, pool_factors=[1])
    with pytest.raises(TypeError):
        _C.prepare(**{**kw, "x": -1})  # pointers are non-negative ints


@pytest.mark.skipif(_C.build_info["cuda"] and _C.cuda_device_count() > 0, reason="a usable GPU is present")
def test_cuda_request_without_gpu_is_a_runtime_error():
    p = _problem()
    kw = dict(device="cuda", x=p["x"].data_ptr(), labels=p["labels"].data_ptr(), fill_noise=p["fill"].data_ptr(),
              eps0=p["eps0"].data_ptr(), xt=p["xt"].data_ptr(), unet_in=p["unet_in"].data_ptr(),
              B=1, J=1, K=2, H=8, W=8, sqrt_ab=0.8, sqrt_1mab=0.6)
    msg = "CUDA error" if _C.build_info["cuda"] else "built without CUDA"
    with pytest.raises(RuntimeError, match=msg):
        _C.prepare(**kw)


@pytest.mark.gpu
@pytest.mark.skipif(not (_C.build_info["cuda"] and _C.cuda_device_count() > 0),
                    reason="needs a CUDA GPU and a CUDA build of drdc_trt._C")
def test_cuda_request_with_host_memory_is_refused_before_any_launch():
    """Host pointers with device="cuda" are refused by name; a kernel reading them would fault
    and leave the CUDA context unusable for every later test of the process."""
    p = _problem()
    kw = dict(device="cuda", x=p["x"].data_ptr(), labels=p["labels"].data_ptr(), fill_noise=p["fill"].data_ptr(),
              eps0=p["eps0"].data_ptr(), xt=p["xt"].data_ptr(), unet_in=p["unet_in"].data_ptr(),
              B=1, J=1, K=2, H=8, W=8, sqrt_ab=0.8, sqrt_1mab=0.6)
    with pytest.raises(ValueError, match="device=cuda but x is not in GPU memory"):
        _C.prepare(**kw)
    gk, keep = _glad_update_kw()
    with pytest.raises(ValueError, match="device=cuda but x_t is not in GPU memory"):
        _C.glad_update(**{**gk, "device": "cuda"})
    assert keep
    assert torch.ones(4, device="cuda").sum().item() == 4.0  # the context is still usable


def test_tensorrt_absent_is_stated():
    if _C.build_info["tensorrt"]:
        pytest.skip("built with TensorRT")
    with pytest.raises(RuntimeError, match="without TensorRT"):
        _C.TensorRTEngine("unet.plan")


def test_refiner_rejects_bad_configuration():
    runner = _C.PythonRunner(lambda *a: None, device="cpu")
    labels = grid_labels(8, (4,), 2, seed=0).numpy()
    base = dict(device="cpu", batch=1, height=8, width=8, num_sets=2, t0=50, num_steps=2, pool_factors=[1],
                labels=labels)
    _C.Refiner(runner, **base)  # valid
    with pytest.raises(ValueError, match="runner runs on cpu"):
        _C.Refiner(runner, **{**base, "device": "cuda"})
    with pytest.raises(ValueError, match="label value 2"):
        _C.Refiner(runner, **{**base, "labels": np.full((1, 8, 8), 2, np.int32)})
    with pytest.raises(ValueError, match="labels are 1x8x8"):
        _C.Refiner(runner, **{**base, "height": 16, "width": 16})
    with pytest.raises(ValueError, match="t0=1000"):
        _C.Refiner(runner, **{**base, "t0": 1000})
    with pytest.raises(ValueError, match="num_steps"):
        _C.Refiner(runner, **{**base, "num_steps": 51})
    with pytest.raises(ValueError, match="alpha_bar"):
        _C.Refiner(runner, **{**base, "alphas_cumprod": np.array([0.5, 1.5])})
    r = _C.Refiner(runner, **base)
    heat = torch.zeros(1, 8, 8)
    with pytest.raises(ValueError, match="x is a null pointer"):
        r.run(x=0, heat=heat.data_ptr())
    with pytest.raises(ValueError, match="all of the noise buffers"):
        r.run(x=heat.data_ptr(), heat=heat.data_ptr(), fill=heat.data_ptr())


def test_runner_exception_propagates():
    class Boom(Exception):
        pass

    def fn(inp, ts, out, stream):
        raise Boom("from the network")

    runner = _C.PythonRunner(fn, device="cpu")
    r = _C.Refiner(runner, device="cpu", batch=1, height=8, width=8, num_sets=2, t0=50, num_steps=2,
                   pool_factors=[1], grid_sizes=[4], seed=0, alphas_cumprod=Schedule.linear().alphas_cumprod)
    x, heat = torch.zeros(1, 3, 8, 8), torch.zeros(1, 8, 8)
    with pytest.raises(Boom, match="from the network"):
        r.run(x=x.data_ptr(), heat=heat.data_ptr())


def _glad_update_kw():
    """Valid raw-pointer arguments of _C.glad_update: 2 rows of 1×2×2."""
    f = [torch.zeros(2, 1, 2, 2) for _ in range(6)]  # x0_gen, x0_in, eps, w, x_t, recon
    rows = dict(score=torch.zeros(2), done=torch.zeros(2, dtype=torch.bool), triggered=torch.zeros(2, dtype=torch.bool),
                steps=torch.zeros(2, dtype=torch.long), trigger_step=torch.zeros(2, dtype=torch.long),
                trigger_kind=torch.zeros(2, dtype=torch.long), max_score=torch.zeros(2))
    keep = f + list(rows.values())
    kw = dict(device="cpu", x0_gen=f[0].data_ptr(), x0_in=f[1].data_ptr(), eps=f[2].data_ptr(), w=f[3].data_ptr(),
              x_t=f[4].data_ptr(), recon=f[5].data_ptr(), **{k: v.data_ptr() for k, v in rows.items()},
              B=2, C=1, H=2, W=2, k=0, t=400, ab_next=0.5, tau=0.5, min_step=350, last=False)
    return kw, keep


@pytest.mark.parametrize("over,match", [
    ({"recon": 0}, "recon is a null pointer"),
    ({"triggered": 0}, "triggered is a null pointer"),
    ({"max_score": 0}, "max_score is a null pointer"),
    ({"B": 0}, "every dimension must be >= 1, got B=0"),
    ({"W": -1}, "every dimension must be >= 1"),
    ({"ab_next": 0.0}, r"ab_next .* must lie in \(0, 1\]"),
    ({"ab_next": float("inf")}, "ab_next"),
    ({"tau": float("nan")}, "tau must not be NaN"),
    ({"min_step": -5}, "min_step must be >= 0, got -5"),
    ({"t": -1}, r"t \(timestep\) must be >= 0"),
    ({"k": -1}, r"k \(step index\) must be >= 0"),
    ({"device": "tpu"}, "device 'tpu'"),
])
def test_glad_update_direct_calls_refuse_by_name(over, match):
    kw, keep = _glad_update_kw()
    _C.glad_update(**kw)  # valid
    with pytest.raises(ValueError, match=match):
        _C.glad_update(**{**kw, **over})
    assert keep


@pytest.mark.parametrize("over,match", [
    ({"eps": 0}, "eps is a null pointer"),
    ({"count": 0}, "count must be >= 1, got 0"),
    ({"sqrt_ab": 0.0}, r"sqrt_ab .* must lie in \(0, 1\]"),
    ({"sqrt_1mab": float("nan")}, r"sqrt_1mab .* must lie in \[0, 1\]"),
    ({"sqrt_1mab": 1.5}, r"sqrt_1mab"),
])
def test_glad_predict_direct_calls_refuse_by_name(over, match):
    a = torch.zeros(4)
    outs = torch.empty(2, 4)
    kw = dict(device="cpu", x_t=a.data_ptr(), x=a.data_ptr(), noise=a.data_ptr(), eps=a.data_ptr(),
              x0_gen=outs[0].data_ptr(), x0_in=outs[1].data_ptr(), count=4, sqrt_ab=0.8, sqrt_1mab=0.6)
    _C.glad_predict(**kw)  # valid
    with pytest.raises(ValueError, match=match):
        _C.glad_predict(**{**kw, **over})


@pytest.mark.skipif(_C.build_info["cuda"] and _C.cuda_device_count() > 0, reason="a usable GPU is present")
def test_glad_cuda_request_without_gpu_is_a_runtime_error():
    kw, keep = _glad_update_kw()
    msg = "CUDA error" if _C.build_info["cuda"] else "built without CUDA"
    with pytest.raises(RuntimeError, match=msg):
        _C.glad_update(**{**kw, "device": "cuda"})
    assert keep
