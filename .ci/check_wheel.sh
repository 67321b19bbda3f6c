#!/usr/bin/env bash
# Builds the release wheel and proves the one abi3 `.so` loads on every CPython >= 3.11 here.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
maturin=(maturin); command -v maturin >/dev/null || maturin=("${PYTHON:-python3}" -m maturin)
"${maturin[@]}" build --release --quiet -o "$out" >/dev/null || { echo "maturin build failed"; exit 1; }
wheel=$(ls "$out"/tokenspeed-*-abi3-*.whl)
echo "wheel: $(basename "$wheel")"
# List to a variable first: `unzip | grep -q` under pipefail fails when grep exits early (SIGPIPE).
listing=$(unzip -l "$wheel")
grep -q "tokenspeed/kernels/__init__.py" <<<"$listing" || { echo "kernels missing from wheel"; exit 1; }
tested=0
# Interpreters on PATH, plus pyenv's (whose shims only answer for the selected version).
candidates=()
for minor in 11 12 13 14; do
  candidates+=("$(command -v "python3.$minor" || true)")
  candidates+=("${PYENV_ROOT:-$HOME/.pyenv}"/versions/3."$minor".*/bin/python3)
done
declare -A seen=()
for py in "${candidates[@]}"; do
  [[ -x $py ]] || continue
  version=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) || continue
  [[ -z ${seen[$version]:-} ]] || continue
  seen[$version]=1
  site="$out/py$version"
  "$py" -m pip install -q --no-deps --target "$site" "$wheel" 2>/dev/null || continue
  PYTHONPATH="$site" "$py" -c 'from tokenspeed import _core; import sys; print(sys.version.split()[0], "loads tokenspeed._core", _core.core_version())'
  tested=$((tested + 1))
done
(( tested >= 1 )) || { echo "no CPython >= 3.11 found to test the wheel"; exit 1; }
