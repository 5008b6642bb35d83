"""Tests for textcore.embeddings and textcore.devices with the real packaged MiniLM (all-MiniLM-L6-v2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import numpy as np
import pytest
import torch

from textcore.devices import attention_kernels, resolve_device, use_bf16
from textcore.embeddings import Encoder
from textcore.errors import InvalidInput

# Very different lengths on purpose, so that length-sorted batching reorders them internally.
TEXTS = [
    "A cat sits on the mat.",
    " ".join(["The quarterly report shows revenue growth across every region and product line."] * 6),
    "Hi",
    "Stock markets fell sharply after the central bank raised interest rates again.",
    "How do I reset my password?",
]

# Cosine between the fp32 and the bf16 embedding of the same text must be at least this.
BF16_MIN_COSINE = 0.99


@pytest.fixture(scope="module")
def encoder() -> Encoder:
    return Encoder.from_pretrained("minilm", device="cpu", precision="fp32", batch_size=2)


def test_shape_dtype_and_unit_norm(encoder: Encoder) -> None:
    vectors = encoder.encode(TEXTS)
    assert encoder.dim == 384
    assert vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert len({v.tobytes() for v in vectors}) == len(TEXTS)


def test_input_order_is_preserved_across_length_sorted_batches(encoder: Encoder) -> None:
    together = encoder.encode(TEXTS)
    for i, text in enumerate(TEXTS):
        alone = encoder.encode([text])[0]
        np.testing.assert_allclose(
            together[i], alone, atol=1e-5, err_msg=f"row {i} is not the embedding of its text"
        )
    reversed_order = encoder.encode(TEXTS[::-1])
    np.testing.assert_allclose(reversed_order[::-1], together, atol=1e-5)


def test_a_paraphrase_scores_higher_than_an_unrelated_sentence(encoder: Encoder) -> None:
    query, paraphrase, unrelated = encoder.encode(
        [
            "How can I change my account password?",
            "What are the steps to reset the password of my account?",
            "The recipe needs two cups of flour and an egg.",
        ]
    )
    close, far = float(query @ paraphrase), float(query @ unrelated)
    assert close > far + 0.3, (close, far)


def test_empty_input_and_single_string(encoder: Encoder) -> None:
    empty = encoder.encode([])
    assert empty.shape == (0, 384)
    assert empty.dtype == np.float32
    with pytest.raises(InvalidInput, match="single string"):
        encoder.encode("not a list")


def test_bf16_agrees_with_fp32(encoder: Encoder) -> None:
    bf16 = Encoder(encoder.backbone, device="cpu", precision="bf16", batch_size=2)
    assert bf16.bf16 is True
    fp32_vectors = encoder.encode(TEXTS)
    bf16_vectors = bf16.encode(TEXTS)
    assert bf16_vectors.dtype == np.float32
    cosines = np.sum(fp32_vectors * bf16_vectors, axis=1)  # both are unit length
    assert cosines.min() >= BF16_MIN_COSINE, cosines


def test_bad_encoder_settings_are_refused(encoder: Encoder) -> None:
    with pytest.raises(InvalidInput, match="max_length"):
        Encoder(encoder.backbone, device="cpu", max_length=4)
    with pytest.raises(InvalidInput, match="precision"):
        Encoder(encoder.backbone, device="cpu", precision="fp16")


@pytest.mark.parametrize("batch_size", [0, -1])
def test_encode_refuses_a_batch_size_below_one(encoder: Encoder, batch_size: int) -> None:
    # 0 used to fall back to the encoder's default batch size without a word
    with pytest.raises(InvalidInput, match=rf"expected batch_size >= 1\b.*found {batch_size}"):
        encoder.encode(TEXTS, batch_size=batch_size)
    np.testing.assert_allclose(encoder.encode(TEXTS, batch_size=1), encoder.encode(TEXTS), atol=1e-5)


def test_use_bf16_choices() -> None:
    cpu = torch.device("cpu")
    with pytest.raises(InvalidInput, match=r"expected precision one of auto, bf16, fp32; found 'nope'"):
        use_bf16("nope", cpu)
    assert use_bf16("fp32", cpu) is False
    assert use_bf16("bf16", cpu) is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; auto picks it")
def test_auto_device_is_cpu_here() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(InvalidInput, match="no CUDA device"):
        resolve_device("cuda")


# Whether each scaled-dot-product attention kernel may be picked (torch leaves these unannotated).
cudnn_sdp_enabled = cast(Callable[[], bool], torch.backends.cuda.cudnn_sdp_enabled)
flash_sdp_enabled = cast(Callable[[], bool], torch.backends.cuda.flash_sdp_enabled)
mem_efficient_sdp_enabled = cast(Callable[[], bool], torch.backends.cuda.mem_efficient_sdp_enabled)


def test_attention_on_cuda_leaves_cudnn_out_and_elsewhere_changes_nothing() -> None:
    before = cudnn_sdp_enabled()
    with attention_kernels(torch.device("cuda")):
        assert not cudnn_sdp_enabled()
        assert flash_sdp_enabled()
        assert mem_efficient_sdp_enabled()
    assert cudnn_sdp_enabled() == before
    with attention_kernels(torch.device("cpu")):
        assert cudnn_sdp_enabled() == before


def test_resolve_device_names() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(InvalidInput, match="expected a device"):
        resolve_device("tpu-please")
