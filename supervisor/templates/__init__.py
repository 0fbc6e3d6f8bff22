"""Prompt templates: Go ``text/template`` as Ollama uses it (parsing now; execution builds on the tree).

``gotemplate`` is the entry point (``parse_template``, ``parse_ollama_template``, tree queries);
``gotemplate_lex``, ``gotemplate_parse`` and ``gotemplate_literals`` follow Go's lexer, parser and
strconv rules so that errors read exactly like Go's; ``gotemplate_nodes`` holds the tree types.
Everything here is pure: no I/O, no global state.
"""

from supervisor.templates.gotemplate import parse_ollama_template, parse_template
from supervisor.templates.gotemplate_nodes import TemplateSet, TemplateSyntaxError, Tree

__all__ = ["TemplateSet", "TemplateSyntaxError", "Tree", "parse_ollama_template", "parse_template"]
