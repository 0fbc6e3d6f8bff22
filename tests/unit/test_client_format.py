"""The CLI's pure formatting: sizes, times, durations, tables and ``show`` output, byte for byte.

Expected strings are derived from Ollama's Go source, named per case: ``format/bytes.go``
(HumanBytes), ``format/format.go`` (HumanNumber), ``format/time.go`` (HumanTime), Go's
``time.Duration.String``, ``api/types.go`` (Metrics.Summary), ``cmd/cmd.go`` (ListHandler,
ListRunningHandler, ShowHandler, showInfo) and tablewriter v0.0.5 (``table.go``, ``wrap.go``,
``util.go``), which Ollama's CLI renders its tables with.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from supervisor.client.humanize import (
    go_duration,
    human_bytes,
    human_number,
    human_time,
    parse_go_time,
    verbose_stats,
)
from supervisor.client.show import metadata_value, show_field, show_info
from supervisor.modelfile.parser import go_float
from supervisor.client.tables import display_width, list_table, processor, ps_table, table, title, until, wrap_string

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=timezone.utc)
UTC = timezone.utc


# format.HumanBytes: decimal units; >= 10 and whole values truncate to an integer, else one decimal.
@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (20, "20 B"),
        (999, "999 B"),
        (1000, "1 KB"),
        (1500, "1.5 KB"),
        (986_000_000, "986 MB"),
        (4_661_224_676, "4.7 GB"),
        (2_000_000_000, "2 GB"),
        (19_999_999_999, "19 GB"),
        (9_960_000_000, "10.0 GB"),
        (26_000_000_000, "26 GB"),
        (1_000_000_000_000, "1 TB"),
        (123_456_789_000_000, "123 TB"),
    ],
)
def test_human_bytes(n: int, text: str) -> None:
    """Sizes print in decimal units with Ollama's decimal/truncation rules."""
    assert human_bytes(n) == text


# format.HumanNumber (cases from Ollama's format_test.go, plus Go's round-half-even %.0f).
@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0"),
        (999, "999"),
        (1000, "1K"),
        (1001, "1K"),
        (1500, "2K"),
        (2500, "2K"),
        (1_000_000, "1M"),
        (125_000_000, "125M"),
        (500_500_000, "500.50M"),
        (500_550_000, "500.55M"),
        (1_000_000_000, "1B"),
        (2_800_000_000, "2.8B"),
        (2_850_000_000, "2.9B"),
        (3_212_749_888, "3.2B"),
        (1_000_000_000_000, "1000B"),
    ],
)
def test_human_number(n: int, text: str) -> None:
    """Counts abbreviate to K/M/B with Ollama's decimals per magnitude."""
    assert human_number(n) == text


# Go's time.Duration.String.
@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (999, "999ns"),
        (1_000, "1µs"),
        (650_000, "650µs"),
        (1_500, "1.5µs"),
        (12_300_000, "12.3ms"),
        (999_999_999, "999.999999ms"),
        (1_000_000_000, "1s"),
        (1_234_567_891, "1.234567891s"),
        (65_000_000_000, "1m5s"),
        (7_200_000_000_000, "2h0m0s"),
        (3_723_000_000_001, "1h2m3.000000001s"),
        (-1_500_000_000, "-1.5s"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    """Durations print as Go's Duration.String does."""
    assert go_duration(ns) == text


# format.HumanTime / humanDuration: seconds and minutes truncate, hours round half away from zero.
@pytest.mark.parametrize(
    ("offset", "text"),
    [
        (timedelta(milliseconds=500), "Less than a second ago"),
        (timedelta(seconds=1), "1 second ago"),
        (timedelta(seconds=59, milliseconds=900), "59 seconds ago"),
        (timedelta(seconds=60), "About a minute ago"),
        (timedelta(seconds=119), "About a minute ago"),
        (timedelta(seconds=120), "2 minutes ago"),
        (timedelta(minutes=59, seconds=59), "59 minutes ago"),
        (timedelta(minutes=60), "About an hour ago"),
        (timedelta(minutes=89), "About an hour ago"),
        (timedelta(minutes=90), "2 hours ago"),
        (timedelta(hours=47, minutes=29), "47 hours ago"),
        (timedelta(hours=47, minutes=30), "2 days ago"),
        (timedelta(days=13, hours=23), "13 days ago"),
        (timedelta(days=14), "2 weeks ago"),
        (timedelta(days=59), "8 weeks ago"),
        (timedelta(days=60), "2 months ago"),
        (timedelta(days=729), "24 months ago"),
        (timedelta(days=730), "2 years ago"),
        (timedelta(0), "Less than a second ago"),
        (-timedelta(minutes=4, seconds=30), "4 minutes from now"),
        (-timedelta(hours=48), "2 days from now"),
        (-timedelta(days=365 * 21 - 1), "20 years from now"),
        (-timedelta(days=365 * 21), "Forever"),
        (-timedelta(days=365 * 200), "Forever"),
    ],
)
def test_human_time(offset: timedelta, text: str) -> None:
    """Times relative to now read as Ollama's HumanTime phrases them."""
    assert human_time(NOW - offset, "Never", NOW) == text


def test_human_time_zero_values() -> None:
    """A missing time or Go's zero time prints the zero value; naive times count as UTC."""
    assert human_time(None, "Never", NOW) == "Never"
    assert human_time(datetime(1, 1, 1, tzinfo=UTC), "Never", NOW) == "Never"
    assert human_time(datetime(2025, 6, 1, 11, 58), "Never", NOW) == "2 minutes ago"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-06-04T14:38:31.83753-07:00", datetime(2024, 6, 4, 21, 38, 31, 837530, tzinfo=UTC)),
        ("2025-06-01T11:59:00.123456789Z", datetime(2025, 6, 1, 11, 59, 0, 123456, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_parse_go_time(text: object, expected: datetime | None) -> None:
    """JSON times parse to aware datetimes; absent, unreadable and zero times give None."""
    assert parse_go_time(text) == expected


def test_verbose_stats_full() -> None:
    """All six metrics give Metrics.Summary's eight padded lines with two-decimal rates."""
    metrics = {
        "total_duration": 5_589_157_167,
        "load_duration": 3_013_701_500,
        "prompt_eval_count": 46,
        "prompt_eval_duration": 1_160_282_000,
        "eval_count": 113,
        "eval_duration": 1_325_948_000,
    }
    # api/types.go Metrics.Summary: 46/1.160282 s = 39.645..., 113/1.325948 s = 85.222...
    assert verbose_stats(metrics) == (
        "total duration:       5.589157167s\n"
        "load duration:        3.0137015s\n"
        "prompt eval count:    46 token(s)\n"
        "prompt eval duration: 1.160282s\n"
        "prompt eval rate:     39.65 tokens/s\n"
        "eval count:           113 token(s)\n"
        "eval duration:        1.325948s\n"
        "eval rate:            85.22 tokens/s\n"
    )


@pytest.mark.parametrize(
    ("metrics", "text"),
    [
        ({}, ""),
        ({"done": True, "load_duration": 0, "eval_count": 3}, "eval count:           3 token(s)\n"),
        (
            {"prompt_eval_duration": 650_000, "total_duration": 12_300_000},
            "total duration:       12.3ms\nprompt eval duration: 650µs\nprompt eval rate:     0.00 tokens/s\n",
        ),
    ],
)
def test_verbose_stats_omits_zero_metrics(metrics: dict[str, Any], text: str) -> None:
    """Zero or missing metrics print no line; a duration without its count still prints its rate."""
    assert verbose_stats(metrics) == text


# tablewriter util.go Title.
@pytest.mark.parametrize(
    ("name", "text"), [("NAME", "NAME"), ("size_vram", "SIZE VRAM"), ("a.b", "A B"), ("1.5", "1.5"), ("_", " "), ("", "")]
)
def test_title(name: str, text: str) -> None:
    """Header cells are upper-cased with _ and non-numeric dots turned into spaces."""
    assert title(name) == text


def test_display_width_counts_terminal_columns() -> None:
    """Wide characters count two columns, combining marks and colour escapes none."""
    assert display_width("模型") == 4
    assert display_width("e\u0301") == 1
    assert display_width("\x1b[1mbold\x1b[0m") == 4


def test_wrap_string_minimum_raggedness() -> None:
    """wrap.go WrapString: breaks minimise squared slack; the limit rises to the widest word."""
    lines = ["the quick brown fox jumps over", "the lazy dog"]
    assert wrap_string("the quick brown fox jumps over the lazy dog", 30) == (lines, 30)
    assert wrap_string("averyveryverylongword x", 5) == (["averyveryverylongword", "x"], 21)
    assert wrap_string("", 0) == ([""], 0)


def test_table_pads_every_cell_and_header_ends_in_one_space() -> None:
    """Cells are left-aligned, each followed by four spaces (last included); the header's last by one."""
    assert table(["NAME", "ID"], [["a", "bbb"], ["cccccc", "d"]]) == (
        "NAME      ID  \n"  # NAME padded to 6 + 4 spaces; ID padded to 3 + 1 space
        "a         bbb    \n"
        "cccccc    d      \n"
    )


def test_table_without_rows_or_header() -> None:
    """An empty table prints its header only; no header and no rows prints nothing."""
    assert table(["NAME", "ID", "SIZE", "MODIFIED"], []) == "NAME    ID    SIZE    MODIFIED \n"
    assert table([], []) == ""


def test_table_wraps_long_cells_with_two_space_filler() -> None:
    """A cell over 30 columns wraps at spaces; the row's other cells get two-space filler lines."""
    assert table(["A_B", "x"], [["the quick brown fox jumps over the lazy dog", "y"]]) == (
        "A B" + " " * 31 + "X \n"
        "the quick brown fox jumps over    y    \n"
        "the lazy dog" + " " * 18 + "    " + "  " + "    \n"
    )


def test_table_rows_of_different_lengths() -> None:
    """Rows print only their own cells; widths are per column over all rows."""
    assert table([], [["", "k", "value"], ["", "longer"]]) == ("    k         value    \n" "    longer    \n")


MODELS = [
    {
        "name": "llama3.2:latest",
        "model": "llama3.2:latest",
        "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
        "size": 2_019_393_189,
        "modified_at": "2025-05-30T05:00:00.123456789-07:00",
    },
    {
        "name": "gpt-oss:120b-cloud",
        "remote_model": "gpt-oss:120b",
        "remote_host": "https://ollama.com:443",
        "digest": "569662207105f0a9",
        "size": 384,
        "modified_at": "2025-06-01T11:59:00Z",
    },
]


def test_list_table() -> None:
    """cmd.go ListHandler: NAME, 12-digit ID, decimal SIZE (``-`` for remote), MODIFIED."""
    assert list_table(MODELS, None, NOW) == (
        "NAME                  ID              SIZE      MODIFIED           \n"
        "llama3.2:latest       a80c4f17acd5    2.0 GB    2 days ago            \n"
        "gpt-oss:120b-cloud    569662207105    -         About a minute ago    \n"
    )


@pytest.mark.parametrize(
    ("prefix", "names"),
    [
        ("LLAMA", ["llama3.2:latest"]),
        ("gpt", ["gpt-oss:120b-cloud"]),
        ("", ["llama3.2:latest", "gpt-oss:120b-cloud"]),
        ("x", []),
    ],
)
def test_list_table_prefix_is_case_insensitive(prefix: str, names: list[str]) -> None:
    """``ollama list PREFIX`` keeps names starting with the prefix, ignoring case."""
    lines = list_table(MODELS, prefix, NOW).splitlines()[1:]
    assert [line.split()[0] for line in lines] == names


RUNNING = [
    {
        "name": "llama3.2:latest",
        "digest": "a80c4f17acd55265feec403c",
        "size": 3_000_000_000,
        "size_vram": 1_440_000_000,
        "context_length": 4096,
        "expires_at": "2025-06-01T12:04:30Z",
    },
    {
        "name": "qwen3:8b",
        "digest": "500a1f067a9f7821",
        "size": 6_000_000_000,
        "size_vram": 6_000_000_000,
        "context_length": 40960,
        "expires_at": "2317-09-12T12:00:00-07:00",
    },
    {
        "name": "x:1",
        "digest": "0123456789abcdef",
        "size": 600_000_000,
        "size_vram": 0,
        "context_length": 2048,
        "expires_at": "2025-06-01T11:04:30Z",
    },
]


def test_ps_table() -> None:
    """cmd.go ListRunningHandler: NAME ID SIZE PROCESSOR CONTEXT UNTIL."""
    assert ps_table(RUNNING, None, NOW) == (
        "NAME               ID              SIZE      PROCESSOR          CONTEXT    UNTIL              \n"
        "llama3.2:latest    a80c4f17acd5    3 GB      52%/48% CPU/GPU    4096       4 minutes from now    \n"
        "qwen3:8b           500a1f067a9f    6 GB      100% GPU           40960      Forever               \n"
        "x:1                0123456789ab    600 MB    100% CPU           2048       Stopping...           \n"
    )


def test_ps_table_prefix_is_case_sensitive() -> None:
    """``ollama ps PREFIX`` compares names as they are (unlike ``list``)."""
    assert ps_table(RUNNING, "LLAMA", NOW) == "NAME    ID    SIZE    PROCESSOR    CONTEXT    UNTIL \n"
    assert [line.split()[0] for line in ps_table(RUNNING, "qwen", NOW).splitlines()[1:]] == ["qwen3:8b"]


# cmd.go ListRunningHandler: CPU share = math.Round(cpu/size*100).
@pytest.mark.parametrize(
    ("size", "vram", "text"),
    [
        (0, 0, "100% CPU"),
        (100, 0, "100% CPU"),
        (100, 100, "100% GPU"),
        (100, 150, "Unknown"),
        (0, 5, "Unknown"),
        (3_000_000_000, 1_440_000_000, "52%/48% CPU/GPU"),
        (8, 7, "13%/87% CPU/GPU"),
        (200, 1, "100%/0% CPU/GPU"),
    ],
)
def test_processor(size: int, vram: int, text: str) -> None:
    """The PROCESSOR column splits the size between CPU and GPU, halves rounding up."""
    assert processor(size, vram) == text


@pytest.mark.parametrize(
    ("expires_at", "text"),
    [
        (None, "Stopping..."),
        ("0001-01-01T00:00:00Z", "Stopping..."),
        ("2025-06-01T11:59:59Z", "Stopping..."),
        ("2025-06-01T12:00:00Z", "Less than a second ago"),
        ("2025-06-01T12:00:01Z", "1 second from now"),
    ],
)
def test_until(expires_at: str | None, text: str) -> None:
    """UNTIL says Stopping... once the expiry has passed; at exactly now HumanTime says '... ago'."""
    assert until(expires_at, NOW) == text


# fmt's %v / %g of a float64 (shortest digits, exponent below 1e-4 or from 1e+06).
@pytest.mark.parametrize(
    ("f", "text"),
    [
        (131072.0, "131072"),
        (1e6, "1e+06"),
        (8030261248.0, "8.030261248e+09"),
        (1e-05, "1e-05"),
        (0.0001, "0.0001"),
        (500000.0, "500000"),
        (3.0, "3"),
        (-2.5, "-2.5"),
        (0.0, "0"),
    ],
)
def test_go_float(f: float, text: str) -> None:
    """Metadata numbers print as Go's %g of a float64."""
    assert go_float(f) == text


# cmd.go showInfo, Metadata: arrays keep items while they fit in 10 columns (at least one).
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (True, "true"),
        ("llama", "llama"),
        (3072, "3072"),
        (1e-05, "1e-05"),
        (["<unk>", "<s>", "</s>"], "[<unk> ...+2 more]"),
        ([1, 2, 3, 4, 5, 6], "[1 2 3 ...+3 more]"),
        ([1, 2], "[1 2]"),
        ([], "[]"),
        (None, "<nil>"),
        ({"a": 1}, "map[string]interface {}"),
    ],
)
def test_metadata_value(value: object, text: str) -> None:
    """Metadata values print as ``show --verbose`` formats each JSON type."""
    assert metadata_value(value) == text


LLAMA: dict[str, Any] = {
    "license": (
        "LLAMA 3.2 COMMUNITY LICENSE AGREEMENT\nLlama 3.2 Version Release Date: September 25, 2024\n\n"
        "“Agreement” means the terms"
    ),
    "modelfile": '# Modelfile generated by "ollama show"\nFROM /models/blob\n',
    "parameters": (
        'stop                           "<|start_header_id|>"\n'
        'stop                           "<|end_header_id|>"\n'
        'stop                           "<|eot_id|>"'
    ),
    "template": "{{ .Prompt }}",
    "details": {
        "parent_model": "",
        "format": "gguf",
        "family": "llama",
        "families": ["llama"],
        "parameter_size": "3.2B",
        "quantization_level": "Q4_K_M",
    },
    "model_info": {
        "general.architecture": "llama",
        "general.parameter_count": 3212749888,
        "llama.context_length": 131072,
        "llama.embedding_length": 3072,
        "tokenizer.ggml.tokens": ["<|begin_of_text|>"] + ["!"] * 128255,
    },
    "tensors": [
        {"name": "token_embd.weight", "type": "Q6_K", "shape": [3072, 128256]},
        {"name": "blk.0.attn_norm.weight", "type": "F32", "shape": [3072]},
    ],
    "capabilities": ["completion", "tools"],
}

LLAMA_MODEL_SECTION = (
    "  Model\n"
    "    architecture        llama     \n"
    "    parameters          3.2B      \n"
    "    context length      131072    \n"
    "    embedding length    3072      \n"
    "    quantization        Q4_K_M    \n"
    "\n"
    "  Capabilities\n"
    "    completion    \n"
    "    tools         \n"
    "\n"
    "  Parameters\n"
    '    stop    "<|start_header_id|>"    \n'
    '    stop    "<|end_header_id|>"      \n'
    '    stop    "<|eot_id|>"             \n'
    "\n"
)
LLAMA_LICENSE_SECTION = (
    "  License\n"
    "    LLAMA 3.2 COMMUNITY LICENSE AGREEMENT                 \n"
    "    Llama 3.2 Version Release Date: September 25, 2024    \n"
    "    ...                                                   \n"
    "\n"
)


def test_show_info() -> None:
    """cmd.go showInfo: titled sections, four-space rows, a blank line after each; License cut to two lines."""
    assert show_info(LLAMA, verbose=False) == LLAMA_MODEL_SECTION + LLAMA_LICENSE_SECTION


def test_show_info_verbose_adds_metadata_and_tensors() -> None:
    """With --verbose, sorted metadata (%g numbers, abridged arrays, wrapped at 30) and tensors follow Parameters."""
    metadata = (
        "  Metadata\n"
        "    general.architecture       llama                             \n"
        "    general.parameter_count    3.212749888e+09                   \n"
        "    llama.context_length       131072                            \n"
        "    llama.embedding_length     3072                              \n"
        "    tokenizer.ggml.tokens      [<|begin_of_text|> ...+128255     \n"
        "      " + " " * 23 + "    more]" + " " * 25 + "    \n"
        "\n"
    )
    tensors = (
        "  Tensors\n"
        "    token_embd.weight         Q6_K    [3072 128256]    \n"
        "    blk.0.attn_norm.weight    F32     [3072]           \n"
        "\n"
    )
    assert show_info(LLAMA, verbose=True) == LLAMA_MODEL_SECTION + metadata + tensors + LLAMA_LICENSE_SECTION


def test_show_info_without_model_info_uses_details() -> None:
    """Without model_info, architecture and parameters come from details (rows kept even when empty)."""
    resp = {"details": {"family": "llama", "parameter_size": "8B", "quantization_level": "Q4_0"}, "model_info": None}
    assert show_info(resp, verbose=True) == (
        "  Model\n"
        "    architecture    llama    \n"
        "    parameters      8B       \n"
        "    quantization    Q4_0     \n"
        "\n"
    )


def test_show_info_remote_model() -> None:
    """A remote model lists its remote name and URL first; rows whose model_info keys are missing drop out."""
    resp = {
        "remote_host": "https://ollama.com:443",
        "remote_model": "gpt-oss:120b",
        "model_info": {},
        "details": {"family": "gptoss", "parameter_size": "116.8B", "quantization_level": "MXFP4"},
        "capabilities": ["completion", "tools", "thinking"],
        "requires": "0.11.4",
    }
    assert show_info(resp, verbose=False) == (
        "  Model\n"
        "    Remote model    gpt-oss:120b              \n"
        "    Remote URL      https://ollama.com:443    \n"
        "    parameters      116.8B                    \n"
        "    quantization    MXFP4                     \n"
        "    requires        0.11.4                    \n"
        "\n"
        "  Capabilities\n"
        "    completion    \n"
        "    tools         \n"
        "    thinking      \n"
        "\n"
    )


def test_show_info_projector_and_system() -> None:
    """Projector rows read vision (else audio) keys; System keeps two trimmed non-blank lines then '...'."""
    resp = {
        "details": {"family": "gemma3", "parameter_size": "4.3B", "quantization_level": "Q4_K_M"},
        "model_info": {"general.architecture": "gemma3", "gemma3.context_length": 131072.0},
        "projector_info": {
            "general.architecture": "clip",
            "general.parameter_count": 437_654_321,
            "clip.vision.embedding_length": 1024,
            "clip.vision.projection_dim": 768,
        },
        "system": "You are Mario.\n\n   Be brief.  \r\nThird line\n",
    }
    assert show_info(resp, verbose=False) == (
        "  Model\n"
        "    architecture      gemma3    \n"
        "    parameters        4.3B      \n"
        "    context length    131072    \n"
        "    quantization      Q4_K_M    \n"
        "\n"
        "  Projector\n"
        "    architecture        clip       \n"
        "    parameters          437.65M    \n"
        "    embedding length    1024       \n"
        "    dimensions          768        \n"
        "\n"
        "  System\n"
        "    You are Mario.    \n"
        "    Be brief.         \n"
        "    ...               \n"
        "\n"
    )


def test_show_info_audio_projector_and_empty_projector() -> None:
    """An audio projector's keys are found after vision's; an empty projector prints its bare title."""
    audio = {"general.architecture": "gemma3n", "gemma3n.audio.embedding_length": 1536}
    base = {"details": {"quantization_level": "Q8_0"}, "model_info": None}
    assert show_info({**base, "projector_info": audio}, verbose=False).endswith(
        "  Projector\n    architecture        gemma3n    \n    embedding length    1536       \n\n"
    )
    assert show_info({**base, "projector_info": {}}, verbose=False).endswith("  Projector\n\n")


def test_show_info_license_wraps_at_100_columns() -> None:
    """License lines over 100 columns wrap at spaces, the continuation behind two-space filler."""
    text = (
        "Permission is hereby granted, free of charge, to any person obtaining a copy of this software and "
        "associated documentation files"
    )
    out = show_info({"model_info": None, "license": text}, verbose=False)
    assert out.endswith(
        "  License\n"
        "    Permission is hereby granted, free of charge, to any person obtaining a copy of this software and"
        + " " * 3 + "    \n"  # 97 columns padded to 100
        "      associated documentation files" + " " * 70 + "    \n"
        "\n"
    )


# cmd.go ShowHandler: Println for license/modelfile/parameters, Print for system/template.
@pytest.mark.parametrize(
    ("flag", "text"),
    [
        ("--license", LLAMA["license"] + "\n"),
        ("modelfile", LLAMA["modelfile"] + "\n"),
        ("--parameters", LLAMA["parameters"] + "\n"),
        ("--template", "{{ .Prompt }}"),
        ("--system", ""),
    ],
)
def test_show_field(flag: str, text: str) -> None:
    """Single-field flags print the field, adding a newline only where Ollama uses Println."""
    assert show_field(LLAMA, flag) == text


def test_show_field_missing_and_unknown() -> None:
    """A missing field prints as empty (license still gets its newline); an unknown flag is an error."""
    assert show_field({}, "license") == "\n"
    with pytest.raises(ValueError):
        show_field(LLAMA, "--bogus")
