"""SIGTERM with requests in flight: they finish with results, then the server exits cleanly."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytestmark = pytest.mark.serving

QUEUE_DELAY_US = 2_000_000  # requests wait 2 s in the batcher: they are surely in flight at the signal


def test_sigterm_finishes_in_flight_requests(serve_bundle, tmp_path):
    from drdc_trt.serving.client import DetectorClient
    from drdc_trt.serving.process import ServerProcess

    srv = ServerProcess(["--bundle", serve_bundle, "--max-queue-delay-us", QUEUE_DELAY_US], tmp_path / "serve.log")
    images = np.random.default_rng(0).integers(0, 256, (3, 2, 30, 30, 3), dtype=np.uint8)
    results, errors, done_at = [None] * 3, [], [0.0] * 3

    def send(i):
        try:
            with DetectorClient(srv.http_url, timeout_s=60) as c:
                results[i] = c.detect_pixels(images[i])
        except Exception as e:  # noqa: BLE001 - collected and reported below
            errors.append(repr(e))
        done_at[i] = time.monotonic()

    with srv:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.8)  # sent, and waiting in the batcher's queue
        signalled = time.monotonic()
        srv.terminate()
        for t in threads:
            t.join(timeout=90)
        code = srv.wait(60)
    assert not errors, errors
    assert all(t > signalled for t in done_at), "a request ended before the signal: nothing was in flight"
    for r in results:
        assert r["pred_score"].shape == (2,) and np.isfinite(r["pred_score"]).all()
    assert code == 0, srv.log()[-4000:]
    assert "shutting down: finishing in-flight requests" in srv.log()
    assert not srv.health("live")
