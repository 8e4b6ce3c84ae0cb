# Source this file (". scripts/env.sh") to build and run with libtorch from the project venv.
_mtseg_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIRTUAL_ENV="$_mtseg_root/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
unset _mtseg_root
# libtorch's shared libraries for every test and bench binary: with the workspace's features
# unified, crates that link libtorch only through mtseg-infer (e.g. mtseg-test-models' tests)
# get no rpath of their own.
for _mtseg_lib in "$VIRTUAL_ENV"/lib/python3*/site-packages/torch/lib; do
  if [ -d "$_mtseg_lib" ]; then
    export LD_LIBRARY_PATH="$_mtseg_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
done
unset _mtseg_lib
