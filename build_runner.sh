#!/usr/bin/env bash
# Build llama.cpp's llama-server (plus ggml-rpc-server and llama-quantize) from pinned source into a
# cache keyed by source hash + backend + flags, and print the absolute path of llama-server as the
# last line of stdout. The same source's safetensors converter (convert_hf_to_gguf.py with its
# conversion/ and gguf-py/) is copied beside the binaries as <runner>/convert/, so that /api/create
# converts with exactly the llama.cpp that will run the result, and the model architectures that
# source can load are listed in <runner>/architectures.txt (a pull refuses a GGUF of any other).
#
# Source: the llama.cpp tree vendored in the PyPI sdist llama-cpp-python==0.3.36 (llama.cpp 0c1e570),
# fetched with pip (the only network it uses), checked against a pinned sha256 and unpacked into
# vendor/llama.cpp. A second run with the same key is a no-op that takes well under a second.
#
# Environment:
#   LLAMASUP_LLAMA_SERVER  use this existing llama-server instead of building (printed back if it runs)
#   LLAMASUP_BACKEND       cpu|cuda|vulkan|metal|rocm (default: cuda when nvcc and an NVIDIA GPU are
#                          present, metal on macOS, cpu otherwise)
#   CMAKE_ARGS             extra CMake arguments (part of the cache key)
#   LLAMASUP_CACHE_DIR     cache root (default: ${XDG_CACHE_HOME:-~/.cache}/llamasup)
#   LLAMASUP_BUILD_JOBS    parallel compile jobs (default: number of cores)
#   PYTHON                 the Python whose pip fetches the source (default: python3)
set -euo pipefail

PKG_VERSION="0.3.36"
PKG_SHA256="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
LLAMA_COMMIT="0c1e570"
RECIPE_VERSION="1" # bump when the flags below change in a way the key would not see
TARGETS=(llama-server ggml-rpc-server llama-quantize)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${LLAMASUP_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llamasup}"
python="${PYTHON:-python3}"
say() { echo "build_runner: $*" >&2; }
die() { say "error: $*"; exit 1; }

if [[ -n "${LLAMASUP_LLAMA_SERVER:-}" ]]; then
    bin="$LLAMASUP_LLAMA_SERVER"
    [[ -x "$bin" ]] || die "LLAMASUP_LLAMA_SERVER=$bin is not an executable file"
    "$bin" --version >/dev/null 2>&1 || die "LLAMASUP_LLAMA_SERVER=$bin does not run ('$bin --version' failed)"
    say "using existing llama-server from LLAMASUP_LLAMA_SERVER"
    cd "$(dirname "$bin")" && echo "$(pwd -P)/$(basename "$bin")"
    exit 0
fi

have_nvidia_gpu() {
    # nvcc alone is not enough: CI machines carry the toolkit without a GPU, and a CUDA build takes
    # several times longer than a CPU one for no benefit there.
    [[ -e /dev/nvidia0 ]] || { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; }
}

backend="${LLAMASUP_BACKEND:-}"
if [[ -z "$backend" ]]; then
    if [[ "$(uname -s)" == "Darwin" ]]; then backend=metal
    elif command -v nvcc >/dev/null 2>&1 && have_nvidia_gpu; then backend=cuda
    else backend=cpu; fi
fi

cmake_flags=(
    -DCMAKE_BUILD_TYPE=Release
    -DBUILD_SHARED_LIBS=OFF            # self-contained binaries that run from the cache directory
    -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF   # no UI download at build time
    -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
    -DGGML_RPC=ON
    -DLLAMA_BUILD_NUMBER=1 -DLLAMA_BUILD_COMMIT="$LLAMA_COMMIT"
)
case "$backend" in
    cpu) cmake_flags+=(-DGGML_METAL=OFF) ;;
    cuda) cmake_flags+=(-DGGML_CUDA=ON) ;;
    vulkan) cmake_flags+=(-DGGML_VULKAN=ON -DGGML_METAL=OFF) ;;
    metal) cmake_flags+=(-DGGML_METAL=ON) ;;
    rocm) cmake_flags+=(-DGGML_HIP=ON) ;;
    *) die "LLAMASUP_BACKEND=$backend is not one of cpu, cuda, vulkan, metal, rocm" ;;
esac
# shellcheck disable=SC2206 # CMAKE_ARGS is a word list by convention (as in llama-cpp-python)
extra=(${CMAKE_ARGS:-})
cmake_flags+=("${extra[@]}")

# Native builds (-march=native, the default) must not be reused on a CPU with other features.
cpu_sig=""
if [[ -r /proc/cpuinfo ]]; then cpu_sig="$(grep -m1 '^flags' /proc/cpuinfo || true)"; fi
sha() { if command -v sha256sum >/dev/null; then sha256sum "$@"; else shasum -a 256 "$@"; fi; }
key_input="$PKG_SHA256|$RECIPE_VERSION|$backend|${cmake_flags[*]}|$(uname -sm)|$cpu_sig|$(${CC:-cc} --version 2>/dev/null | head -1)"
key="$LLAMA_COMMIT-$backend-$(printf '%s' "$key_input" | sha | cut -c1-12)"
dest="$cache_root/runners/$key"

cached() { [[ -x "$dest/bin/llama-server" && -f "$dest/COMPLETE" ]]; }
has_converter() { [[ -f "$1/convert/convert_hf_to_gguf.py" ]]; }
has_architectures() { [[ -s "$1/architectures.txt" ]]; }
extras_present() { has_converter "$1" && has_architectures "$1"; }

if cached && extras_present "$dest"; then
    say "cached runner $key"
    echo "$dest/bin/llama-server"
    exit 0
fi

mkdir -p "$cache_root/runners" "$cache_root/src"
# One build per key at a time; a second caller waits and then finds the finished build.
exec 9>"$cache_root/runners/.$key.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi
if cached && extras_present "$dest"; then
    say "cached runner $key (built by a concurrent run)"
    echo "$dest/bin/llama-server"
    exit 0
fi

vendor="$here/vendor/llama.cpp"
# The pinned source in vendor/llama.cpp: fetched (sha256-checked) and unpacked unless already there.
ensure_source() {
    [[ "$(cat "$vendor/.llamasup-source" 2>/dev/null)" == "$PKG_SHA256" ]] && return 0
    local sdist="$cache_root/src/llama_cpp_python-$PKG_VERSION.tar.gz" got tmpdl
    if [[ ! -f "$sdist" ]] || [[ "$(sha "$sdist" | cut -d' ' -f1)" != "$PKG_SHA256" ]]; then
        say "fetching llama-cpp-python==$PKG_VERSION source distribution"
        tmpdl="$(mktemp -d "$cache_root/src/.dl.XXXXXX")"
        "$python" -m pip download --quiet --disable-pip-version-check --no-binary :all: --no-deps \
            "llama-cpp-python==$PKG_VERSION" -d "$tmpdl" >&2 \
            || { rm -rf "$tmpdl"; die "pip could not download llama-cpp-python==$PKG_VERSION"; }
        mv -f "$tmpdl/llama_cpp_python-$PKG_VERSION.tar.gz" "$sdist"
        rm -rf "$tmpdl"
    fi
    got="$(sha "$sdist" | cut -d' ' -f1)"
    [[ "$got" == "$PKG_SHA256" ]] || { rm -f "$sdist"; die "sha256 mismatch for $sdist: got $got, want $PKG_SHA256"; }
    say "unpacking llama.cpp $LLAMA_COMMIT into vendor/llama.cpp"
    rm -rf "$vendor" "$vendor.tmp"
    mkdir -p "$vendor.tmp"
    tar -xzf "$sdist" -C "$vendor.tmp" --strip-components=3 "llama_cpp_python-$PKG_VERSION/vendor/llama.cpp"
    echo "$PKG_SHA256" >"$vendor.tmp/.llamasup-source"
    mv "$vendor.tmp" "$vendor"
}

# Copy the safetensors converter into runner directory $1 as $1/convert (complete or absent).
install_converter() {
    local tmp="$1/.convert.tmp"
    rm -rf "$tmp" "$1/convert"
    mkdir -p "$tmp"
    cp -R "$vendor/convert_hf_to_gguf.py" "$vendor/conversion" "$vendor/gguf-py" "$tmp/"
    find "$tmp" -name __pycache__ -type d -prune -exec rm -rf {} +
    mv "$tmp" "$1/convert"
}

# List in $1/architectures.txt the model architectures this source can load: the names in
# LLM_ARCH_NAMES (src/llama-arch.cpp) less its placeholders ("clip" serves llama-quantize only).
install_architectures() {
    local src="$vendor/src/llama-arch.cpp"
    sed -n '/LLM_ARCH_NAMES = {/,/^};/p' "$src" | grep -v -e LLM_ARCH_UNKNOWN -e LLM_ARCH_CLIP \
        | sed -n 's/.*{ *LLM_ARCH_[A-Z0-9_]*, *"\([^"]*\)".*/\1/p' >"$1/architectures.txt.tmp"
    [[ -s "$1/architectures.txt.tmp" ]] || die "no architecture names found in $src"
    mv "$1/architectures.txt.tmp" "$1/architectures.txt"
}

ensure_source
if cached; then
    # Binaries built before the converter or the architecture list were part of the runner: add
    # what is missing, keep the build.
    has_converter "$dest" || install_converter "$dest"
    has_architectures "$dest" || install_architectures "$dest"
    say "cached runner $key (converter and architecture list completed)"
    echo "$dest/bin/llama-server"
    exit 0
fi

jobs="${LLAMASUP_BUILD_JOBS:-$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)}"
build="$cache_root/runners/.build-$key"
say "building $key (backend $backend, $jobs jobs); a cold CPU build takes about 10 CPU-minutes"
start=$SECONDS
cmake -S "$vendor" -B "$build" "${cmake_flags[@]}" >"$build.configure.log" 2>&1 \
    || { tail -n 40 "$build.configure.log" >&2; die "cmake configure failed (log: $build.configure.log)"; }
cmake --build "$build" --config Release -j "$jobs" --target "${TARGETS[@]}" >"$build.log" 2>&1 \
    || { grep -E 'error|Error' "$build.log" | tail -n 40 >&2; die "build failed (log: $build.log)"; }

stage="$cache_root/runners/.stage-$key"
rm -rf "$stage"
mkdir -p "$stage/bin"
for t in "${TARGETS[@]}"; do cp "$build/bin/$t" "$stage/bin/"; done
# Backends that still produce shared objects (e.g. CUDA's) travel with the binaries.
find "$build/bin" -maxdepth 1 -name '*.so*' -exec cp -P {} "$stage/bin/" \; 2>/dev/null || true
"$stage/bin/llama-server" --version >/dev/null 2>&1 || die "the built llama-server does not run"
install_converter "$stage"
install_architectures "$stage"
printf 'key=%s\nbackend=%s\nflags=%s\nseconds=%s\n' "$key" "$backend" "${cmake_flags[*]}" "$((SECONDS - start))" >"$stage/COMPLETE"
rm -rf "$dest"
mv "$stage" "$dest"
rm -rf "$build" "$build.log" "$build.configure.log"
say "built $key in $((SECONDS - start))s"
echo "$dest/bin/llama-server"
