#!/usr/bin/env bash
# Builds the release wheel and proves the one abi3 `.so` loads on every CPython >= 3.11 here.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
"${PYTHON:-python3}" -m maturin build --release --quiet -o "$out" >/dev/null || { echo "maturin build failed"; exit 1; }
wheel=$(ls "$out"/tokenspeed-*-abi3-*.whl)
echo "wheel: $(basename "$wheel")"
unzip -l "$wheel" | grep -q "tokenspeed/kernels/__init__.py" || { echo "kernels missing from wheel"; exit 1; }
tested=0
for minor in 11 12 13; do
  py=$(command -v "python3.$minor" || true)
  [[ -n $py ]] && "$py" -c 'import sys' 2>/dev/null || continue
  site="$out/py3$minor"
  "$py" -m pip install -q --no-deps --target "$site" "$wheel" 2>/dev/null || continue
  PYTHONPATH="$site" "$py" -c 'from tokenspeed import _core; import sys; print(sys.version.split()[0], "loads tokenspeed._core", _core.core_version())'
  tested=$((tested + 1))
done
(( tested >= 1 )) || { echo "no CPython >= 3.11 found to test the wheel"; exit 1; }
