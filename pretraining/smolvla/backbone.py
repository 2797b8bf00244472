"""A SmolVLM built locally (config in code + our BPE tokenizer + processor), nothing downloaded.

lerobot's SmolVLA reads its backbone from ``vlm_model_name`` with ``AutoConfig`` and
``AutoProcessor``. For random-init pretraining we write such a folder ourselves, named by the
alias ``dlr-smolvlm-<preset>-<image_size>`` and cached in ``pretraining/assets/``. A real VLM
(e.g. a local copy of ``HuggingFaceTB/SmolVLM2-500M-Video-Instruct``) is used as is.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from pretraining.text import build_asset, load_tokenizer

logger = logging.getLogger(__name__)

_ALIAS = re.compile(r"^dlr-smolvlm-(tiny|base)-(\d+)$")
VLM_SIZES = {
    # text: hidden, layers, heads, kv heads, mlp; vision: hidden, layers, heads, mlp, patch
    "tiny": dict(text=(128, 4, 4, 2, 256), vision=(96, 2, 4, 192, 8)),
    "base": dict(text=(768, 12, 12, 4, 2048), vision=(384, 12, 6, 1536, 16)),
}


def smolvlm_alias(preset: str, image_size: int) -> str:
    return f"dlr-smolvlm-{preset}-{image_size}"


def build_smolvlm(out_dir: Path, preset: str, image_size: int) -> Path:
    """Write config.json + tokenizer + processor of a random-init SmolVLM to ``out_dir``."""
    from transformers import SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor
    from transformers.models.smolvlm import SmolVLMVideoProcessor

    tokenizer = load_tokenizer()
    t_hidden, t_layers, t_heads, t_kv, t_mlp = VLM_SIZES[preset]["text"]
    v_hidden, v_layers, v_heads, v_mlp, patch = VLM_SIZES[preset]["vision"]
    scale = 2 if (image_size // patch) % 2 == 0 else 1
    config = SmolVLMConfig(
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        scale_factor=scale,
        vocab_size=len(tokenizer),
        text_config=dict(
            model_type="llama", vocab_size=len(tokenizer), hidden_size=t_hidden,
            num_hidden_layers=t_layers, num_attention_heads=t_heads, num_key_value_heads=t_kv,
            head_dim=t_hidden // t_heads, intermediate_size=t_mlp, max_position_embeddings=2048,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=v_hidden, num_hidden_layers=v_layers, num_attention_heads=v_heads,
            intermediate_size=v_mlp, patch_size=patch, image_size=image_size,
        ),
    )  # fmt: skip
    processor = SmolVLMProcessor(
        image_processor=SmolVLMImageProcessor(
            size={"longest_edge": image_size}, max_image_size={"longest_edge": image_size}
        ),
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(),
        image_seq_len=((image_size // patch) ** 2) // scale**2,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir


def resolve_vlm(name: str) -> str:
    """Alias -> local folder (built on first use); anything else is returned unchanged."""
    match = _ALIAS.match(name)
    if match is None:
        return name
    preset, size = match.group(1), int(match.group(2))
    return str(build_asset(name, "config.json", lambda out: build_smolvlm(out, preset, size)))
