"""A client of ``drdc serve`` (or of a repository from ``drdc export --triton-repo``) over HTTP or
gRPC, with tritonclient::

    from drdc_trt.serving.client import DetectorClient
    with DetectorClient("http://127.0.0.1:8000") as c:
        for r in c.detect_files(["part1.png", "part2.png"]):
            print(r["pred_score"], r["pred_label"])
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from . import INPUT_ENCODED, INPUT_RAW, MODEL_ENCODED, MODEL_RAW, OUTPUT_STEPS

SCHEMES = {"http": 8000, "grpc": 8001}


def parse_url(url: str) -> tuple[str, str]:
    """("http" or "grpc", "host:port") of ``http://host:port``, ``grpc://host:port`` or ``host:port``
    (HTTP)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme not in SCHEMES:
        raise ValueError(f"URL {url!r}: scheme {parts.scheme!r}, expected http:// or grpc://")
    if not parts.hostname:
        raise ValueError(f"URL {url!r}: no host")
    if parts.path not in ("", "/"):
        raise ValueError(f"URL {url!r}: give the server's address only (no path {parts.path!r})")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return parts.scheme, f"{host}:{parts.port or SCHEMES[parts.scheme]}"


class DetectorClient:
    """Requests to the ``drdc`` (pixels) and ``drdc_encoded`` (image files) models. Results per image:
    ``pred_score`` (float), ``pred_label`` (bool), ``pred_mask`` (S×S bool) and, when asked,
    ``anomaly_map`` (S×S float16); from a GLAD model also ``steps`` (int, the U-Net steps the image
    took)."""

    def __init__(self, url: str, timeout_s: float = 120.0):
        self.protocol, self.address = parse_url(url)
        self.timeout_s = float(timeout_s)
        if self.protocol == "http":
            import tritonclient.http as tc

            self._client = tc.InferenceServerClient(self.address, connection_timeout=self.timeout_s,
                                                    network_timeout=self.timeout_s)
        else:
            import tritonclient.grpc as tc

            self._client = tc.InferenceServerClient(self.address)
        self._tc = tc
        self._max_batch: dict[str, int] = {}
        self._outputs: dict[str, tuple[str, ...]] = {}

    def __enter__(self) -> "DetectorClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def ready(self) -> bool:
        try:
            return bool(self._client.is_server_ready())
        except Exception:  # noqa: BLE001 - connection refused etc.: not ready
            return False

    def max_batch(self, model: str) -> int:
        if model not in self._max_batch:
            cfg = self._client.get_model_config(model)
            cfg = cfg.get("config", cfg) if isinstance(cfg, dict) else cfg.config
            mb = cfg["max_batch_size"] if isinstance(cfg, dict) else cfg.max_batch_size
            self._max_batch[model] = int(mb)
        return self._max_batch[model]

    def outputs(self, model: str) -> tuple[str, ...]:
        """The model's output names (a GLAD model also has ``steps``)."""
        if model not in self._outputs:
            meta = self._client.get_model_metadata(model)
            outs = meta["outputs"] if isinstance(meta, dict) else meta.outputs
            self._outputs[model] = tuple(o["name"] if isinstance(o, dict) else o.name for o in outs)
        return self._outputs[model]

    def _infer(self, model: str, name: str, array: np.ndarray, dtype: str, anomaly_map: bool) -> dict:
        tc = self._tc
        inp = tc.InferInput(name, list(array.shape), dtype)
        inp.set_data_from_numpy(array)
        names = ["pred_score", "pred_label", "pred_mask"] + (["anomaly_map"] if anomaly_map else [])
        names += [OUTPUT_STEPS] if OUTPUT_STEPS in self.outputs(model) else []
        kw = {"timeout": int(self.timeout_s * 1e6)} if self.protocol == "grpc" else {}
        res = self._client.infer(model, [inp], outputs=[tc.InferRequestedOutput(n) for n in names], **kw)
        out = {n: res.as_numpy(n) for n in names}
        out["pred_score"] = out["pred_score"].reshape(-1)
        out["pred_label"] = out["pred_label"].reshape(-1).astype(bool)
        if OUTPUT_STEPS in out:
            out[OUTPUT_STEPS] = out[OUTPUT_STEPS].reshape(-1)
        return out

    def detect_pixels(self, images: np.ndarray, anomaly_map: bool = False) -> dict[str, np.ndarray]:
        """uint8 B×H×W×3 (or one H×W×3) in one request → arrays, batch first."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        return self._infer(MODEL_RAW, INPUT_RAW, images, "UINT8", anomaly_map)

    def detect_encoded(self, files: list[bytes], anomaly_map: bool = False) -> dict[str, np.ndarray]:
        """Encoded image files (PNG, JPEG, ...) in one request → arrays, batch first."""
        arr = np.empty((len(files), 1), dtype=object)
        for i, b in enumerate(files):
            arr[i, 0] = bytes(b)
        return self._infer(MODEL_ENCODED, INPUT_ENCODED, arr, "BYTES", anomaly_map)

    def detect_files(self, paths, anomaly_map: bool = False, batch: int | None = None) -> list[dict]:
        """Image files, sent as they are (the server reads them as drdc detect does), ``batch`` per
        request (default: the model's max batch) → one dict per image."""
        paths = [Path(p) for p in paths]
        step = max(1, min(batch or self.max_batch(MODEL_ENCODED), self.max_batch(MODEL_ENCODED)))
        results = []
        for i in range(0, len(paths), step):
            chunk = paths[i:i + step]
            out = self.detect_encoded([p.read_bytes() for p in chunk], anomaly_map)
            for j, p in enumerate(chunk):
                r = {"image": str(p), "pred_score": float(out["pred_score"][j]),
                     "pred_label": int(out["pred_label"][j]), "pred_mask": out["pred_mask"][j]}
                if anomaly_map:
                    r["anomaly_map"] = out["anomaly_map"][j]
                if OUTPUT_STEPS in out:  # GLAD
                    r[OUTPUT_STEPS] = int(out[OUTPUT_STEPS][j])
                results.append(r)
        return results


def result_line(r: dict) -> str:
    """The line drdc detect prints for an image."""
    return f"{r['image']}: pred_score {r['pred_score']:.3f} {'ANOMALOUS' if r['pred_label'] else 'normal'}"
