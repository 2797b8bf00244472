"""A small byte-level BPE tokenizer for LIBERO-style instructions, trained locally.

No tokenizer is ever downloaded: :func:`tokenizer_path` trains one deterministically on
synthetic LIBERO-style instructions (byte-level, so any string still tokenizes) and caches it in
``pretraining/assets/``. Policies refer to it by the alias :data:`DEFAULT_TOKENIZER`, which
:class:`DlrTokenizerProcessorStep` resolves at load time, so saved processors never store a
machine-specific path. Any other ``tokenizer_name`` (a local folder, e.g. the one of a real
pretrained LM) is passed to ``AutoTokenizer`` unchanged.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lerobot.processor import ProcessorStepRegistry, TokenizerProcessorStep

logger = logging.getLogger(__name__)

DEFAULT_TOKENIZER = "dlr-libero-bpe"
ASSETS_DIR = Path(__file__).parent / "assets"
VOCAB_SIZE = 1024
SPECIAL_TOKENS = {
    "pad_token": "<pad>",
    "bos_token": "<bos>",
    "eos_token": "<eos>",
    "unk_token": "<unk>",
}
# SmolVLM's processor looks these up on the tokenizer (``tokenizer.fake_image_token_id`` ...).
IMAGE_TOKENS = {
    "image_token": "<image>",
    "fake_image_token": "<fake_token_around_image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}

_VERBS = ["pick up", "put", "place", "open", "close", "turn on", "turn off", "push", "stack"]
_OBJECTS = [
    "the black bowl",
    "the plate",
    "the ketchup",
    "the alphabet soup",
    "the cream cheese",
    "the butter",
    "the milk",
    "the orange juice",
    "the tomato sauce",
    "the bbq sauce",
    "the salad dressing",
    "the chocolate pudding",
    "the wine bottle",
    "the book",
    "the mug",
    "the frying pan",
    "the moka pot",
    "the basket",
    "the caddy",
    "the cabinet",
    "the drawer",
    "the microwave",
    "the stove",
    "the white mug",
    "the yellow and white mug",
    "the red mug",
]
_PLACES = [
    "on the plate",
    "in the basket",
    "on the stove",
    "on top of the cabinet",
    "in the tray",
    "on the wine rack",
    "in the top drawer of the cabinet",
    "next to the plate",
    "on the left of the caddy",
    "on the right compartment of the caddy",
    "into the microwave",
    "between the plate and the ramekin",
    "on the cookie box",
    "and place it on the plate",
]


def libero_style_corpus() -> list[str]:
    """Deterministic list of LIBERO-like instructions used to train the tokenizer."""
    lines = [
        f"{verb} {obj} {place}" for verb, obj, place in itertools.product(_VERBS, _OBJECTS, _PLACES)
    ]
    lines += [f"{verb} {obj}" for verb, obj in itertools.product(_VERBS, _OBJECTS)]
    lines += [
        "LIVING ROOM SCENE1",
        "KITCHEN SCENE3",
        "STUDY SCENE2",
        "open the top drawer and put the bowl inside",
    ]
    return lines


def build_tokenizer(out_dir: Path, vocab_size: int = VOCAB_SIZE) -> Path:
    """Train the byte-level BPE tokenizer and save it as a ``transformers`` tokenizer folder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values()) + list(IMAGE_TOKENS.values())
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(libero_style_corpus(), trainer=trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, extra_special_tokens=IMAGE_TOKENS, **SPECIAL_TOKENS
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return out_dir


def build_asset(name: str, marker: str, build: Callable[[Path], object]) -> Path:
    """Return ``<assets>/<name>``, building it once (temp folder, then rename) if missing.

    Assets live next to the code; when that folder is read-only (a non-editable install) they
    are built under ``~/.cache/dlr_bench/assets`` instead.
    """
    for root in (ASSETS_DIR, Path.home() / ".cache" / "dlr_bench" / "assets"):
        if (root / name / marker).exists():
            return root / name
    root = ASSETS_DIR
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    except OSError:
        root = Path.home() / ".cache" / "dlr_bench" / "assets"
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    logger.info("Building %s into %s", name, root)
    build(tmp)
    tmp.chmod(0o755)
    try:
        os.replace(tmp, root / name)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return root / name


def tokenizer_path(name: str = DEFAULT_TOKENIZER) -> str:
    """Resolve a tokenizer name: the alias builds (once) and returns the local folder."""
    if name != DEFAULT_TOKENIZER:
        return name
    return str(build_asset(DEFAULT_TOKENIZER, "tokenizer.json", build_tokenizer))


def load_tokenizer(name: str = DEFAULT_TOKENIZER):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_path(name))


@dataclass
@ProcessorStepRegistry.register(name="dlr_tokenizer_processor")
class DlrTokenizerProcessorStep(TokenizerProcessorStep):
    """lerobot's tokenizer step, resolving :data:`DEFAULT_TOKENIZER` to the local folder."""

    def __post_init__(self) -> None:
        if self.tokenizer is None and self.tokenizer_name is not None:
            self.tokenizer = load_tokenizer(self.tokenizer_name)
            super().__post_init__()
            self.tokenizer = None  # so that get_config() keeps the portable name
        else:
            super().__post_init__()
