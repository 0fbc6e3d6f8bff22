"""Capabilities a Go ``TEMPLATE`` gives a model (reference/ollama-api.md §8.4), from its parse tree.

Ollama asks the template, not the weights: a template that names ``.Tools`` can render tool
definitions (``tools``), one that names ``.Suffix`` can fill in the middle (``insert``), and one that
shows ``.Thinking`` between an opening and a closing tag inside its ``range`` over ``.Messages``
can replay reasoning (``thinking``). A template that does not parse gives none (create refuses such
templates; one pulled from elsewhere is reported when it is used).
"""

from __future__ import annotations

from ..store.gguf_info import GGUFInfo, capabilities
from .gotemplate import infer_thinking_tags, ollama_vars, parse_ollama_template
from .gotemplate_nodes import TemplateSyntaxError


def template_capabilities(source: str) -> list[str]:
    """``tools``, ``insert``, ``thinking`` (in Ollama's order) for a Go template's text."""
    try:
        tset = parse_ollama_template(source)
    except TemplateSyntaxError:
        return []
    names = set(ollama_vars(tset))
    caps = []
    if "tools" in names:
        caps.append("tools")
    if "suffix" in names:
        caps.append("insert")
    opening, closing = infer_thinking_tags(tset)
    if opening and closing:
        caps.append("thinking")
    return caps


def model_capabilities(
    info: GGUFInfo, *, has_projector: bool, go_template: str | None, projector: GGUFInfo | None = None
) -> list[str]:
    """A model's capabilities: the GGUF's (and its projector's: ``projector`` is that layer's header,
    which tells ``vision`` from ``audio``), except that a Go TEMPLATE decides tools/insert/thinking."""
    caps = capabilities(info, has_projector=has_projector, projector=projector)
    if go_template is not None:
        caps = [c for c in caps if c in ("completion", "embedding", "vision", "audio")]
        caps += template_capabilities(go_template)
    return caps
