#!/usr/bin/env bash
# Builds the folder of wheels that lets gantrans and scripts/gpu_check.py run on a machine that
# has PyTorch and the scientific stack (torchvision, numpy, scipy, pillow, tqdm, tensorboard,
# torchmetrics, pytest) but no package index: gantrans's own wheel, built from this checkout,
# and the pure-Python dependencies such a machine usually lacks (hydra-core, omegaconf,
# antlr4-python3-runtime, torch-fidelity), at the versions installed beside this checkout.
# Every wheel is py3-none-any, so any Python and platform takes it.
#
#   scripts/gpu_wheels.sh [DIR]              # DIR defaults to gpu_wheels
#   scripts/gpu_wheels.sh --dry-run [DIR]    # print the pip commands, run nothing
#
# Copy DIR (and this checkout) to the GPU machine, then
#   python scripts/gpu_check.py --out gpu_check --wheels DIR
# installs them for the check's processes (docs/gpu.md, "A machine without a package index").
# Rebuild after changing gantrans: its wheel is a copy of the source.
set -euo pipefail

dry_run=0
if [[ "${1:-}" == "--dry-run" ]]; then
    dry_run=1
    shift
fi
dir="${1:-gpu_wheels}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python}"

# the versions installed here: what the test suite ran against
version() {
    "$python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" \
        2>/dev/null || { echo "error: $1 is not installed for $python: pip install -e '$root'" >&2; exit 2; }
}
hydra="hydra-core==$(version hydra-core)"
omegaconf="omegaconf==$(version omegaconf)"
antlr4="antlr4-python3-runtime==$(version antlr4-python3-runtime)"
fidelity="torch-fidelity==$(version torch-fidelity)"

run() {
    echo "+ $*"
    if [[ $dry_run == 0 ]]; then
        "$@"
    fi
}

[[ $dry_run == 1 ]] || mkdir -p "$dir"
# gantrans and antlr4 (published as a source archive only) are built into wheels here;
# setuptools leaves a build/ folder in the checkout, removed unless it was there before
had_build=0
[[ -e "$root/build" ]] && had_build=1
run "$python" -m pip wheel --no-deps --wheel-dir "$dir" "$root" "$antlr4"
[[ $dry_run == 1 || $had_build == 1 ]] || rm -rf "$root/build"
# the others are published as wheels
run "$python" -m pip download --no-deps --only-binary=:all: --dest "$dir" "$hydra" "$omegaconf" "$fidelity"
if [[ $dry_run == 0 ]]; then
    echo "wheels in $dir:"
    ls -1 "$dir"
fi
