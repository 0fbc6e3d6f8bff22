"""Prompt templates: Go ``text/template`` as Ollama uses it — parsing and execution.

``gotemplate`` is the parsing entry point (``parse_template``, ``parse_ollama_template``, tree
queries); ``gotemplate_lex``, ``gotemplate_parse`` and ``gotemplate_literals`` follow Go's lexer,
parser and strconv rules so that errors read exactly like Go's; ``gotemplate_nodes`` holds the
tree types. ``goexec.execute`` runs a tree with Go's semantics (statements there, pipelines in
``goeval``) over the value model of ``govalues``; printing is ``gofmt`` (with ``goprintf`` for
format strings and ``gostrconv`` for number and quote spellings), the builtins ``gofuncs``, JSON
``gomarshal``; ``ollama_values`` builds the data Ollama gives templates (``TemplateValues`` from
``message_value``/``tools_value``; the types of messages and tools are there) and ``render``
runs them. Everything here is pure: no I/O, no global state.
"""

from supervisor.templates.goexec import TemplateExecError, execute
from supervisor.templates.gofuncs import GoFunc, ParamKind
from supervisor.templates.gotemplate import parse_ollama_template, parse_template
from supervisor.templates.gotemplate_nodes import TemplateSet, TemplateSyntaxError, Tree
from supervisor.templates.govalues import NO_VALUE, OrderedGoMap
from supervisor.templates.ollama_values import (
    OLLAMA_FUNCTIONS,
    TemplateValues,
    message_value,
    render,
    tool_call_value,
    tools_value,
)

__all__ = [
    "NO_VALUE",
    "OLLAMA_FUNCTIONS",
    "GoFunc",
    "OrderedGoMap",
    "ParamKind",
    "TemplateExecError",
    "TemplateSet",
    "TemplateSyntaxError",
    "TemplateValues",
    "Tree",
    "execute",
    "message_value",
    "parse_ollama_template",
    "parse_template",
    "render",
    "tool_call_value",
    "tools_value",
]
