# Sourced on a GPU machine: the Rust extension from a wheel built here (maturin build -o DIR),
# fla-core from .whl/ when present, PYTHONPATH, unbuffered output.
# usage: source benches/gpu_env.sh .device-h4
set -e
WHEEL_DIR=${1:-.device}
python3 -c "import zipfile,glob;zipfile.ZipFile(sorted(glob.glob('$WHEEL_DIR/*.whl'))[-1]).extract('tokenspeed/_core.abi3.so','/tmp/core')"
cp /tmp/core/tokenspeed/_core.abi3.so python/tokenspeed/
export PYTHONPATH=python:benches
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
export PYTHONUNBUFFERED=1
set +e
