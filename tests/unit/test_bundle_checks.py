"""Export-side checks that need no model: the TensorRT 10 ONNX allowlist and
restrictions, the I/O contract check, plan compatibility and optimisation profiles."""

import importlib.util

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from drdc_trt.export.onnx_export import OnnxCheckError, check_onnx, tensorrt_problems
from drdc_trt.export.tensorrt_build import (TensorRTUnavailable, base_profile, import_tensorrt, plan_mismatch,
                                            unet_profile)
from drdc_trt.config import preset


def _graph(nodes, opset=17, inits=(), inputs=None, outputs=None):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 8, 8])]
    g = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _conv_relu(weight_as_input=False):
    w = numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["h"], name="conv"), helper.make_node("Relu", ["h"], ["y"], name="relu")]
    if weight_as_input:
        extra = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8]),
                 helper.make_tensor_value_info("w", TensorProto.FLOAT, [3, 3, 1, 1])]
        return _graph(nodes, inputs=extra)
    return _graph(nodes, inits=[w])


def test_a_plain_graph_passes():
    assert tensorrt_problems(_conv_relu()) == []


def test_unsupported_ops_and_domains_are_named():
    m = _graph([helper.make_node("NonZero", ["x"], ["nz"], name="nz"),
                helper.make_node("Relu", ["x"], ["y"], name="r"),
                helper.make_node("MyOp", ["x"], ["z"], name="custom", domain="com.example")])
    problems = tensorrt_problems(m)
    assert "node nz (NonZero): op not on the TensorRT 10 allowlist" in problems
    assert "node custom (MyOp): custom domain 'com.example' needs a TensorRT plugin" in problems
    assert len(problems) == 2


def test_opset_outside_tensorrt_range():
    assert tensorrt_problems(_graph([helper.make_node("Relu", ["x"], ["y"])], opset=21)) == [
        "opset 21 outside the range TensorRT 10 parses (9..20)"]


def test_resize_and_conv_restrictions():
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    m = _graph([helper.make_node("Resize", ["x", "", "scales"], ["y"], name="rs", mode="cubic")], inits=[scales])
    assert tensorrt_problems(m) == ["node rs (Resize): mode 'cubic' (TensorRT: nearest, linear)"]
    assert tensorrt_problems(_conv_relu(weight_as_input=True)) == ["node conv (Conv): weights 'w' are not an initializer"]


def test_check_onnx_enforces_the_io_contract(tmp_path):
    p = tmp_path / "m.onnx"
    onnx.save(_conv_relu(), p)
    spec_in = [{"name": "x", "shape": ["batch", 3, 8, 8], "dtype": "float32"}]
    spec_out = [{"name": "y", "shape": ["batch", 3, 8, 8], "dtype": "float32"}]
    info = check_onnx(p, spec_in, spec_out)
    assert info.opset == 17 and info.ops == ["Conv", "Relu"]
    with pytest.raises(OnnxCheckError, match=r"input names \['x'\], expected \['image'\]"):
        check_onnx(p, [{**spec_in[0], "name": "image"}], spec_out)
    with pytest.raises(OnnxCheckError, match=r"output 'y': dtype float32, expected float16"):
        check_onnx(p, spec_in, [{**spec_out[0], "dtype": "float16"}])
    fixed = _graph(_conv_relu().graph.node, inits=_conv_relu().graph.initializer,
                   inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 3, 8, 8])],
                   outputs=[helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 3, 8, 8])])
    onnx.save(fixed, p)
    with pytest.raises(OnnxCheckError, match="batch dimension is fixed to 4, expected dynamic"):
        check_onnx(p, spec_in, spec_out)


def test_check_onnx_runs_the_graph_to_confirm_output_shapes(tmp_path):
    # shape inference does not resolve this Resize, so only running the graph shows
    # that the declared 17×17 output is really 16×16
    p = tmp_path / "m.onnx"
    scales = helper.make_node("Constant", [], ["s0"], value=numpy_helper.from_array(
        np.array([1, 1, 2, 2], np.float32)))
    computed = helper.make_node("Abs", ["s0"], ["scales"])  # a computed scale: no static value
    out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 17, 17])]
    onnx.save(_graph([scales, computed,
                      helper.make_node("Resize", ["x", "", "scales"], ["y"], name="up", mode="nearest")],
                     outputs=out), p)
    spec_in = [{"name": "x", "shape": ["batch", 3, 8, 8], "dtype": "float32"}]
    spec_out = [{"name": "y", "shape": ["batch", 3, 17, 17], "dtype": "float32"}]
    check_onnx(p, spec_in, spec_out, execute=False)  # static checks alone pass
    with pytest.raises(OnnxCheckError, match=r"output 'y': a batch of 2 gives shape \(2, 3, 16, 16\), "
                                             r"expected \(2, 3, 17, 17\)"):
        check_onnx(p, spec_in, spec_out)
    # with a constant scale, shape inference itself sees the contradiction
    onnx.save(_graph([scales, helper.make_node("Resize", ["x", "", "s0"], ["y"], name="up", mode="nearest")],
                     outputs=out), p)
    with pytest.raises(OnnxCheckError, match=r"onnx.checker: .*differ in dimension 2: \(16\) vs \(17\)"):
        check_onnx(p, spec_in, spec_out)


def test_plan_mismatch_names_version_and_architecture():
    meta = {"tensorrt_version": "10.3.0", "compute_capability": "8.6", "device_name": "NVIDIA A10"}
    assert plan_mismatch(meta, "10.3.0", "8.6") is None
    assert plan_mismatch(meta, "10.8.0", "8.6") == "built with TensorRT 10.3.0, this machine has TensorRT 10.8.0"
    assert plan_mismatch(meta, "10.3.0", "9.0", "NVIDIA H100") == (
        "built for GPU compute capability 8.6 (NVIDIA A10), this GPU (NVIDIA H100) has compute capability 9.0")
    both = plan_mismatch(meta, "10.8.0", "9.0")
    assert "TensorRT 10.8.0" in both and "compute capability 9.0" in both


def test_profiles_cover_the_batch_range():
    cfg = preset("tiny").to_dict()
    assert base_profile(cfg, 8) == {"image": ((1, 3, 32, 32), (8, 3, 32, 32), (8, 3, 32, 32))}
    assert unet_profile(cfg, 4, 8) == {"x": ((4, 6, 32, 32), (32, 6, 32, 32), (32, 6, 32, 32)),
                                       "timesteps": ((4,), (32,), (32,))}


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_missing_tensorrt_is_a_clear_error():
    with pytest.raises(TensorRTUnavailable, match=r"TensorRT is not installed: .*`tensorrt` Python package "
                                                  r"\(TensorRT 10;.*--backend onnxruntime"):
        import_tensorrt()
