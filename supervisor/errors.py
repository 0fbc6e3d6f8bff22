"""The one error tree of llamasup.

Every failure a client can see is a ``LlamasupError``. Each carries the HTTP status Ollama uses and a
message that is already the exact text Ollama sends (``error`` field), so the HTTP layer
(``api/errors.py``) is the single place that turns them into a response, in the shape of the route
(Ollama, OpenAI or Anthropic).

::

    LlamasupError (500)
    ├── BadRequest (400)
    │   ├── MissingBody            "missing request body"
    │   ├── InvalidJSON            Go encoding/json style messages
    │   ├── InvalidModelName       "invalid model name" (routes may pass their own wording)
    │   ├── InvalidOption          option type errors (status 500, as Ollama)
    │   ├── ModelfileError         Modelfile syntax or PARAMETER value, "(line N): …" where known
    │   ├── MissingCapability      "<model> does not support tools" and the like
    │   └── PromptTooLong          the prompt cannot be truncated to fit the context
    ├── NotFound (404)
    │   └── ModelNotFound          "model '<name>' not found"
    ├── ServerBusy (503)           queue full
    ├── RequestCanceled (499)      client went away while waiting
    ├── StoreError (500)           corrupt manifest or missing blob
    ├── ConversionError (500)      convert/quantize failed or cannot run (exit status + output tail)
    ├── RunnerError (500)          anything about a llama-server process
    │   ├── RunnerBinaryNotFound   no llama-server; names build_runner.sh
    │   ├── RunnerStartError       exited or stalled while loading (exit status + stderr tail)
    │   ├── RunnerCrashed          died while serving a request
    │   └── RunnerHTTPError        llama-server answered with an error status (status passed through)
    │       └── ContextOverflow    the prompt exceeded the slot context (truncated and retried)
    ├── SigningKeyError (500)      ~/.ollama/id_ed25519 unreadable, encrypted, not ed25519 or corrupt
    ├── RegistryError (500)        a registry request failed; ``registry_status`` is the registry's own status
    │   ├── RegistryNotFound       also a NotFound: "pull model manifest: file does not exist", a missing blob
    │   ├── RegistryUnauthorized   no, wrong or insufficient credentials; names the host and
    │   │   │                      ``llamasup login <host>``, never a secret
    │   │   └── RegistryInsufficientScope   authenticated, but the registry denies the action
    │   ├── RegistryRealmMismatch  a Bearer realm on another host: ``realm host "a" does not match …``
    │   ├── RegistryHTTPError      any other refusal: "<status>: <body>" (prefixed where Ollama prefixes)
    │   ├── RegistryProtocolError  an answer without what the protocol promises (Location, Content-Range …)
    │   ├── CredentialsFileError   the llamasup credentials file cannot be read or written
    │   └── RegistryConnectionError   no connection, reset, body cut short: ``retryable``
    │       └── RegistryAuthExpired   a token expired under a body that cannot be re-sent: send it again
    └── ConfigError (not HTTP)     bad settings at start-up

Registry errors all carry status 500 whatever the registry answered: Ollama reports every pull and push
failure that way (streamed as an ``{"error": …}`` line, or 500 with ``stream: false``), so that is what
its clients expect; the registry's own status stays on the error for retry decisions.
"""

from __future__ import annotations


class LlamasupError(Exception):
    """Base of every error llamasup reports; ``status`` is the HTTP status Ollama uses."""

    status: int = 500

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return self.message


class BadRequest(LlamasupError):
    status = 400


class MissingBody(BadRequest):
    def __init__(self) -> None:
        super().__init__("missing request body")


class InvalidJSON(BadRequest):
    """The body is not JSON, or a field has the wrong JSON type."""


class InvalidModelName(BadRequest):
    def __init__(self, message: str = "invalid model name") -> None:
        super().__init__(message)


class InvalidOption(BadRequest):
    """An ``options`` value of the wrong type; Ollama answers these with 500."""

    status = 500


class ModelfileError(BadRequest):
    """A Modelfile that cannot be turned into a create request; ``line`` is 0 when not tied to one.

    The line prefix is part of the message because Ollama's parser puts it there, and it is what a
    user needs to find the mistake.
    """

    def __init__(self, message: str, *, line: int = 0) -> None:
        super().__init__(f"(line {line}): {message}" if line > 0 else message)
        self.line = line
        self.detail = message


class NotFound(LlamasupError):
    status = 404


class ModelNotFound(NotFound):
    def __init__(self, name: str, *, template: str = "model '{name}' not found") -> None:
        super().__init__(template.format(name=name))
        self.name = name


class ServerBusy(LlamasupError):
    status = 503

    def __init__(self) -> None:
        super().__init__("server busy, please try again.  maximum pending requests exceeded")


class RequestCanceled(LlamasupError):
    status = 499

    def __init__(self) -> None:
        super().__init__("request canceled")


class StoreError(LlamasupError):
    """The model store holds something unreadable (corrupt manifest, missing blob)."""


class ConversionError(LlamasupError):
    """Converting safetensors to GGUF or quantizing a GGUF failed, or the tools for it are missing."""


class RunnerError(LlamasupError):
    """A llama-server process failed."""


class RunnerBinaryNotFound(RunnerError):
    pass


class RunnerStartError(RunnerError):
    """llama-server exited or stalled before it became ready."""


class RunnerCrashed(RunnerError):
    """llama-server stopped while serving a request."""

    PREFIX = (
        "model runner has unexpectedly stopped, this may be due to resource limitations "
        "or an internal error, check ollama server logs for details"
    )

    def __init__(self, detail: str = "") -> None:
        super().__init__(f"{self.PREFIX}: {detail}" if detail else self.PREFIX)


class RunnerHTTPError(RunnerError):
    """llama-server answered with an error; its status and text pass through to the client."""


class ContextOverflow(RunnerHTTPError):
    """llama-server refused a prompt longer than its slot context (``exceed_context_size_error``);
    inference truncates the history and retries, so clients see this only with ``truncate: false``."""

    def __init__(self, message: str, *, n_prompt_tokens: int, n_ctx: int) -> None:
        super().__init__(message, status=400)
        self.n_prompt_tokens = n_prompt_tokens
        self.n_ctx = n_ctx


class MissingCapability(BadRequest):
    """The model cannot do what the request asks (tools, thinking, insert, vision, generate, chat)."""


class PromptTooLong(BadRequest):
    """The prompt cannot be made to fit the context (the last message alone is too long)."""

    def __init__(self) -> None:
        super().__init__(
            "the prompt is longer than the context length currently available to the model; shorten the "
            "prompt, adjust the context length in settings, or use a model with a longer context length"
        )


class RegistryError(LlamasupError):
    """A registry request failed. ``registry_status`` is the registry's HTTP status (0: none came)."""

    status = 500  # explicit: RegistryNotFound must not inherit NotFound's 404 through the MRO

    def __init__(self, message: str, *, registry_status: int = 0) -> None:
        super().__init__(message)
        self.registry_status = registry_status

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again may succeed (the service decides how often)."""
        return False


class RegistryNotFound(RegistryError, NotFound):
    """The registry has no such manifest or blob (404)."""


class RegistryUnauthorized(RegistryError):
    """The registry or its token server refused us; ``host`` is the registry's host[:port]."""

    def __init__(self, message: str, *, host: str, registry_status: int = 401) -> None:
        super().__init__(message, registry_status=registry_status)
        self.host = host


class RegistryInsufficientScope(RegistryUnauthorized):
    """The token was issued but does not grant the action (``error="insufficient_scope"``)."""


class RegistryRealmMismatch(RegistryError):
    """A Bearer challenge names a token realm that llamasup will not send credentials to."""


class RegistryHTTPError(RegistryError):
    """The registry answered with an error status not covered by a more specific class."""

    @property
    def retryable(self) -> bool:
        return self.registry_status >= 500 or self.registry_status in (408, 429)


class RegistryProtocolError(RegistryError):
    """A success status without what the protocol promises (a Location, the asked byte range …)."""


class CredentialsFileError(RegistryError):
    """The llamasup credentials file is unreadable, malformed or cannot be written."""


class RegistryConnectionError(RegistryError):
    """No answer: refused or reset connection, a timeout, a body cut short. Worth retrying."""

    @property
    def retryable(self) -> bool:
        return True


class RegistryAuthExpired(RegistryConnectionError):
    """The registry asked for authentication again while a one-shot body (an async iterable) was being
    sent, so the request could not be repeated here; fresh authorization is cached: send it again."""


class ConfigError(Exception):
    """Invalid configuration at start-up (not an HTTP error)."""


class SigningKeyError(LlamasupError):
    """Ollama's registry signing key (``id_ed25519``) cannot be read, created or used; the message
    names the file and, where there is one, the fix (llamasup reads unencrypted OpenSSH ed25519 keys)."""
