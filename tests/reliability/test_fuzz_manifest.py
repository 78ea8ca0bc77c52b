"""Fuzzing the bundle manifest reader: seeded mutations of a real exported manifest.json, each
loaded the way the runtime loads a bundle. Every input must either load (and then read back
without an error) or be refused with BundleError, the library's error naming the field at
fault; any other exception (KeyError, TypeError, RecursionError, ...) is a crash.

Two families, BYTE_INPUTS + TREE_INPUTS inputs in all:
  * bytes: bit flips, byte changes, truncation, random bytes, deep nesting, huge or odd
    numbers, bad escapes, deleted or copied slices — mostly malformed JSON;
  * tree: valid JSON with a field deleted, retyped or given a hostile value (NaN, ±inf,
    huge ints, deep lists, wrong types, path-like names) — what the validation must catch.
File hashes are not verified (verify=False): the file checks are not the parser, and hashing
the ONNX files per input would dominate the time.
"""

from __future__ import annotations

import copy
import json
import random
import time
from collections import Counter

import pytest

from drdc_trt.loading import load_checkpoint
from drdc_trt.export.bundle import MANIFEST, BundleError, load_bundle

BYTE_INPUTS = 6_000
TREE_INPUTS = 6_000
SEED = 20

TOKENS = [b"1e999999", b"-1e400", b"1e-400", b"123456789012345678901234567890", b"9" * 5000, b"-0", b"0.", b".5",
          b"01", b"1e", b"NaN", b"Infinity", b"-Infinity", b"0x1p3", b'"\\u12"', b'"\\uZZZZ"', b'"\\ud800"', b'"\\x41"',
          b'"\\', b"\\u", b'"', b"\x00", b"\x01", b"\n", b"\xff\xfe", b"\xc3", b"tru", b"nul", b"{", b"}", b"[", b"]",
          b":", b",", b",]", b'{"k"}', b'{"k":}', b"[1,]", b"2147483648", b"true", b"null", b"[]", b"{}"]
HOSTILE = [None, True, False, 0, -1, 1, 2**31, 2**64, -(2**63) - 1, 10**400, 1.5, -0.0, 1e308, float("nan"),
           float("inf"), float("-inf"), "", "x" * 1000, "../../etc/passwd", "/abs", "a\x00b", "é", [], {}, [None],
           [1, 2, 3], {"k": "v"}, [-1, 0], [2**40], ["float32"], "float64", "int8"]


def _mutate_bytes(src: bytes, rng: random.Random) -> bytes:
    s = bytearray(src)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(s) + 1)
        op = rng.randrange(8)
        if op == 0 and s:
            s[rng.randrange(len(s))] ^= 1 << rng.randrange(8)
        elif op == 1 and s:
            s[rng.randrange(len(s))] = rng.randrange(256)
        elif op == 2:
            del s[rng.randrange(len(s) + 1):]
        elif op == 3:
            s[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4:
            depth = rng.choice([rng.randint(1, 50), rng.randint(500, 5000), rng.randint(50_000, 200_000)])
            nest = b"[" * depth + b"0" + (b"]" * depth if rng.random() < 0.5 else b"")
            s[at:at] = nest
        elif op == 5:
            s[at:at] = rng.choice(TOKENS)
        elif op == 6:
            del s[at:at + rng.randint(1, 64)]
        elif s:
            start = rng.randrange(len(s))
            s[at:at] = s[start:start + rng.randint(1, 256)]
    return bytes(s)


def _nodes(tree, path=()):
    """(path, value) of every node below the root."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for k, v in items:
        yield path + (k,), v
        yield from _nodes(v, path + (k,))


def _mutate_tree(src: dict, rng: random.Random) -> bytes:
    tree = copy.deepcopy(src)
    for _ in range(rng.randint(1, 3)):
        nodes = list(_nodes(tree))
        path, value = rng.choice(nodes)
        parent = tree
        for k in path[:-1]:
            parent = parent[k]
        op = rng.randrange(5)
        if op == 0:  # delete the field (or element)
            del parent[path[-1]]
        elif op == 1:  # a hostile value
            parent[path[-1]] = copy.deepcopy(rng.choice(HOSTILE))
        elif op == 2:  # the value wrapped in a list, or a list's first element in its place
            parent[path[-1]] = value[0] if isinstance(value, list) and value else [value]
        elif op == 3 and isinstance(value, (int, float)) and not isinstance(value, bool):  # a number nudged
            parent[path[-1]] = rng.choice([value + 1, value - 1, -value, value * 1e6, str(value), float(value)])
        elif isinstance(parent, dict):  # a field renamed
            parent[path[-1] + rng.choice(["_", "X", " "])] = parent.pop(path[-1])
    text = json.dumps(tree)  # NaN and ±inf come out as the non-standard tokens Python's json reads back
    if rng.random() < 0.1:  # a deep list for a value somewhere
        at = text.find(":", rng.randrange(len(text))) + 1
        if at:
            depth = rng.choice([100, 2_000, 100_000])
            text = text[:at] + "[" * depth + "1" + "]" * depth + text[at:]
    return text.encode()


def _load_like_the_runtime(path) -> None:
    b = load_bundle(path, verify=False)
    b.model_config()
    _ = (b.image_size, b.rows_per_image, b.fusion, b.normalization, b.max_batch, b.threshold("image_threshold"),
         b.threshold("pixel_threshold"))
    for net in ("base", "unet"):
        b.inputs(net), b.outputs(net), b.onnx_path(net), b.plan(net)
    b.load_noise()
    b.load_pixel_stats()


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint, tmp_path_factory):
    from drdc_trt.export.exporter import export_bundle

    out = tmp_path_factory.mktemp("fuzz") / "bundle"
    export_bundle(load_checkpoint(tiny_checkpoint), out, check_batches=())
    return out


def test_mutated_manifests_load_or_give_a_bundle_error(bundle, capsys):
    manifest = bundle / MANIFEST
    original = manifest.read_bytes()
    _load_like_the_runtime(bundle)  # the seed itself loads
    tree = json.loads(original)
    rng = random.Random(SEED)
    outcomes, crashes = Counter(), []
    t0 = time.perf_counter()
    inputs = [("bytes", i) for i in range(BYTE_INPUTS)] + [("tree", i) for i in range(TREE_INPUTS)]
    try:
        for family, i in inputs:
            data = _mutate_bytes(original, rng) if family == "bytes" else _mutate_tree(tree, rng)
            manifest.write_bytes(data)
            try:
                _load_like_the_runtime(bundle)
                outcomes[family, "loaded"] += 1
            except BundleError as e:
                assert str(e).startswith("bundle "), e  # says what it is about
                outcomes[family, "BundleError"] += 1
            except Exception as e:  # noqa: BLE001 — anything else is what this test looks for
                outcomes[family, "crash"] += 1
                where = e.__traceback__
                while where.tb_next is not None:
                    where = where.tb_next
                kind = (type(e).__name__, where.tb_frame.f_code.co_filename.rsplit("/", 1)[-1], where.tb_lineno)
                if kind not in {c[0] for c in crashes}:
                    crashes.append((kind, family, i, str(e)[:160]))
    finally:
        manifest.write_bytes(original)
    seconds = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\nmanifest fuzzing: {len(inputs)} mutated inputs ({BYTE_INPUTS} byte-level, {TREE_INPUTS} tree-level) "
              f"in {seconds:.0f} s: {dict(sorted(outcomes.items()))}")
    assert not crashes, "\n".join(map(str, crashes))
    assert sum(outcomes.values()) == len(inputs) >= 10_000
    # The mutations reach past the JSON syntax check: some tree mutations load, others are refused.
    assert outcomes["tree", "loaded"] > 100 and outcomes["tree", "BundleError"] > 1000, outcomes
