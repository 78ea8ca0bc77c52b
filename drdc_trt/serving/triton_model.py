"""Triton Python-backend model of a repository from ``drdc export --triton-repo`` (copied there as
model.py): the whole detector of a bundle (DRDC, DiffusionAD or GLAD; GLAD also answers ``steps``),
one prediction per dynamic batch, a bad request answered with its own error while the rest of its
batch gets results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from drdc_trt.serving import INPUT_ENCODED, INPUT_RAW, OUTPUT_STEPS
from drdc_trt.serving.model import RequestError, ServingModel


PER_IMAGE = ("pred_score", "pred_label", OUTPUT_STEPS)


class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in cfg.get("parameters", {}).items()}
        here = Path(args["model_repository"]) / str(args["model_version"])
        self.model = ServingModel.load(bundle=(here / params.get("bundle", "bundle")).resolve(),
                                       backend=params.get("backend", "onnxruntime"),
                                       max_batch=int(cfg["max_batch_size"]))

    def execute(self, requests):
        decoded = []
        for i, request in enumerate(requests):
            inputs = {}
            for name in (INPUT_RAW, INPUT_ENCODED):
                t = pb_utils.get_input_tensor_by_name(request, name)
                if t is not None:
                    inputs[name] = t.as_numpy()
            try:
                decoded.append(self.model.decode(inputs, 0))
            except RequestError as e:
                decoded.append(e)
        good = [x for x in decoded if not isinstance(x, Exception)]
        pred = self.model.predict(np.concatenate(good)) if good else None
        responses, start = [], 0
        for x in decoded:
            if isinstance(x, Exception):
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(x))))
                continue
            sl = slice(start, start + x.shape[0])
            start += x.shape[0]
            out = pred.split(sl)
            for name in PER_IMAGE:  # B → B×1, as the config declares
                if name in out:
                    out[name] = out[name].reshape(-1, 1)
            responses.append(pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, value) for name, value in out.items()]))
        return responses
