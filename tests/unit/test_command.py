"""The llama-server command line and child environment (pure)."""

from __future__ import annotations

from pathlib import Path

from supervisor.pool.hardware import parse_cpu_flags, repack_is_safe
from supervisor.pool.placement import RunnerOptions, effective_num_ctx, plan_runner
from supervisor.runner.command import OWNER_ENV, RunnerConfig, build_argv, child_env
from supervisor.settings import Settings


def test_argv_is_explicit_about_memory() -> None:
    """Context, slots, GPU layers, prompt cache, UI and log level are always given explicitly."""
    cfg = RunnerConfig(model_path=Path("/m.gguf"), alias="m:latest", ctx_size=8192, parallel=2, cache_ram_mib=64)
    argv = build_argv(Path("/bin/llama-server"), cfg, Path("/run/x/r1.sock"))
    pairs = dict(zip(argv[1::1], argv[2::1], strict=False))
    assert pairs["--ctx-size"] == "8192" and pairs["--parallel"] == "2" and pairs["--n-gpu-layers"] == "auto"
    assert pairs["--cache-ram"] == "64" and pairs["--log-verbosity"] == "4" and pairs["--host"] == "/run/x/r1.sock"
    assert "--port" not in argv
    assert "--no-webui" in argv and "--jinja" in argv
    assert "--mlock" not in argv and "--no-mmap" not in argv  # removed in this llama.cpp


def test_optional_flags() -> None:
    """num_gpu, threads, batch, flash attention and KV cache type appear only when set."""
    cfg = RunnerConfig(Path("/m"), "m", 4096, gpu_layers=0, threads=3, batch_size=256, flash_attention=False, kv_cache_type="q8_0")
    argv = build_argv(Path("/b"), cfg, Path("/s.sock"))
    joined = " ".join(argv)
    for part in ("--n-gpu-layers 0", "--threads 3", "--batch-size 256", "--ubatch-size 256", "--flash-attn off", "--cache-type-k q8_0"):
        assert part in joined


def test_child_env_scrubs_llama_overrides() -> None:
    """LLAMA_ARG_*, LLAMA_SERVER_ROUTER_PORT and LLAMA_API_KEY never reach a runner; the owner mark does."""
    parent = {"PATH": "/bin", "LLAMA_ARG_CTX_SIZE": "1", "LLAMA_SERVER_ROUTER_PORT": "9", "LLAMA_API_KEY": "k", "HOME": "/root",
              "LLAMA_MEDIA_MARKER": "<img>"}  # fmt: skip
    env = child_env(parent, owner="1:2.000", config_home=Path("/cfg"), marker="<__m__>")
    assert env["PATH"] == "/bin" and env["HOME"] == "/root"
    assert not {"LLAMA_ARG_CTX_SIZE", "LLAMA_SERVER_ROUTER_PORT", "LLAMA_API_KEY"} & set(env)
    assert env[OWNER_ENV] == "1:2.000" and env["XDG_CONFIG_HOME"] == "/cfg"
    assert env["LLAMA_MEDIA_MARKER"] == "<__m__>"  # the supervisor's marker, never the parent's


def test_num_ctx_rules() -> None:
    """num_ctx defaults to OLLAMA_CONTEXT_LENGTH or 4096, is at least 4, and is clamped to the training context."""
    s = Settings()
    assert effective_num_ctx(None, s, 131072) == 4096
    assert effective_num_ctx(1, s, 131072) == 4
    assert effective_num_ctx(100000, s, 2048) == 2048
    assert effective_num_ctx(None, Settings(context_length=8192), None) == 8192


def test_plan_multiplies_context_by_parallel() -> None:
    """Each slot gets num_ctx: the runner's -c is num_ctx x OLLAMA_NUM_PARALLEL."""
    cfg = plan_runner(model_path=Path("/m"), alias="m", train_ctx=None, options=RunnerOptions(num_ctx=2048), settings=Settings(num_parallel=3))
    assert (cfg.ctx_size, cfg.parallel, cfg.ctx_per_slot) == (6144, 3, 2048)
    assert cfg.gpu_layers is None


def test_projector_adapters_and_repack_flags() -> None:
    """A projector becomes --mmproj, each adapter --lora, and repack=False --no-repack."""
    config = RunnerConfig(
        model_path=Path("/m.gguf"), alias="m", ctx_size=64, projector=Path("/p.gguf"),
        adapters=(Path("/a1.gguf"), Path("/a2.gguf")), repack=False,
    )  # fmt: skip
    argv = build_argv(Path("/bin/llama-server"), config, Path("/run/r1.sock"))
    assert argv[argv.index("--mmproj") + 1] == "/p.gguf"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--lora"] == ["/a1.gguf", "/a2.gguf"]
    assert "--no-repack" in argv
    plain = build_argv(Path("/bin/llama-server"), RunnerConfig(model_path=Path("/m.gguf"), alias="m", ctx_size=64), Path("/s.sock"))
    assert "--mmproj" not in plain and "--lora" not in plain and "--no-repack" not in plain


def test_repack_is_off_exactly_on_amx_cpus() -> None:
    """CPUs with amx_int8 get --no-repack (repacking crashes there); others keep it."""
    amx = parse_cpu_flags("processor\t: 0\nflags\t\t: fpu sse avx512f amx_tile amx_int8 amx_bf16\n")
    assert "amx_int8" in amx and not repack_is_safe(amx)
    assert repack_is_safe(parse_cpu_flags("flags\t: fpu sse avx2\n"))
    assert repack_is_safe(parse_cpu_flags("Features\t: fp asimd\n"))  # arm64 spelling


def test_placement_flags() -> None:
    """The planner's layout is explicit and llama.cpp's own fitting is off; use_mmap false and main_gpu map
    to this llama-server's flags (--load-mode none, --split-mode none --main-gpu)."""
    plain = build_argv(Path("/b"), RunnerConfig(Path("/m"), "m", 4096), Path("/s.sock"))
    assert " --fit off " in " ".join(plain) + " " and "--tensor-split" not in plain and "--load-mode" not in plain
    cfg = RunnerConfig(Path("/m"), "m", 4096, gpu_layers=9, tensor_split=(0.25, 0.75), mmap=False)
    joined = " ".join(build_argv(Path("/b"), cfg, Path("/s.sock")))
    assert "--n-gpu-layers 9" in joined and "--tensor-split 0.25,0.75" in joined and "--load-mode none" in joined
    main = " ".join(build_argv(Path("/b"), RunnerConfig(Path("/m"), "m", 4096, main_gpu=1), Path("/s.sock")))
    assert "--split-mode none --main-gpu 1" in main


def test_runner_options_from_requests() -> None:
    """main_gpu and use_mmap reach the runner; num_parallel counts from the model's parameters only."""
    from supervisor.protocol.ollama import resolve_options

    opts = resolve_options({"num_parallel": 4}, {"main_gpu": 1, "use_mmap": False, "num_parallel": 9}).runner
    assert (opts.main_gpu, opts.use_mmap, opts.num_parallel) == (1, False, 4)
    cfg = plan_runner(model_path=Path("/m"), alias="m", train_ctx=None, options=opts, settings=Settings(), parallel=4)
    assert (cfg.main_gpu, cfg.mmap, cfg.parallel, cfg.ctx_size) == (1, False, 4, 4 * 4096)


def test_embedding_and_rerank_runners() -> None:
    """Embedding models get --embeddings, rerankers --reranking, both a batch and micro-batch of the
    whole slot context (an input must fit one micro-batch); generative runners neither."""
    def argv(mode: str, **opts: int) -> list[str]:
        cfg = plan_runner(model_path=Path("/m"), alias="m", train_ctx=512, options=RunnerOptions(num_ctx=512, **opts),
                          settings=Settings(), mode=mode)  # fmt: skip
        return build_argv(Path("/b"), cfg, Path("/s.sock"))

    embed, rerank, generate = argv("embed"), argv("rerank"), argv("generate")
    assert "--embeddings" in embed and "--reranking" not in embed
    assert "--reranking" in rerank and "--embeddings" not in rerank
    for a in (embed, rerank):
        assert a[a.index("--batch-size") + 1] == a[a.index("--ubatch-size") + 1] == "512"
    assert "--embeddings" not in generate and "--reranking" not in generate and "--batch-size" not in generate
    larger = argv("embed", num_batch=1024)
    assert larger[larger.index("--ubatch-size") + 1] == "1024"  # a larger num_batch is kept
