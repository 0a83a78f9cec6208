"""ONNX Runtime sessions for the encoder graphs: CUDA when asked for and usable, else CPU, and the input feed of a
BERT-like graph."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from workers.classifier.tokens import IntArray

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
_ORT_DEFAULT_SEVERITY = 2


def encoder_feed(session: ort.InferenceSession, ids: IntArray, mask: IntArray) -> dict[str, IntArray]:
    """The input dict for a BERT-like ONNX model, matched on the model's own input names."""
    feed: dict[str, IntArray] = {}
    for inp in session.get_inputs():
        name = inp.name
        if "input_ids" in name:
            feed[name] = ids
        elif "attention_mask" in name:
            feed[name] = mask
        elif "token_type" in name:
            feed[name] = np.zeros_like(ids)
        else:
            raise ValueError(f"unexpected model input {name!r}")
    return feed


def create_session(
    model: Path | bytes, providers: str = "auto", intra_op_threads: int | None = None
) -> ort.InferenceSession:
    """An ONNX Runtime session; "auto" tries CUDA when listed and falls back to CPU quietly."""
    if providers not in ("auto", "cpu", "cuda"):
        raise ValueError(f"providers must be 'auto', 'cpu' or 'cuda', got {providers!r}")
    listed = CUDA in ort.get_available_providers()
    try_cuda = providers == "cuda" or (providers == "auto" and listed)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if intra_op_threads is not None:
        options.intra_op_num_threads = intra_op_threads
    source = model if isinstance(model, bytes) else str(model)
    if try_cuda:
        # a CUDA provider that is listed but cannot load logs an ERROR line through the default logger
        ort.set_default_logger_severity(4)
        try:
            session = ort.InferenceSession(source, sess_options=options, providers=[CUDA, CPU])
        finally:
            ort.set_default_logger_severity(_ORT_DEFAULT_SEVERITY)
    else:
        session = ort.InferenceSession(source, sess_options=options, providers=[CPU])
    active = session.get_providers()
    if providers == "cuda" and CUDA not in active:
        raise RuntimeError("providers='cuda' was asked for, but CUDAExecutionProvider cannot be used here")
    if CUDA in active:
        log.info("classifier runs on %s", CUDA)
    elif try_cuda:
        log.info("classifier runs on %s (CUDA is listed but not usable: fell back to CPU)", CPU)
    else:
        log.info("classifier runs on %s", CPU)
    return session
