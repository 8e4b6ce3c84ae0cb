# Source this file (". scripts/env.sh") to build and run with libtorch from the project venv.
_mtseg_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export VIRTUAL_ENV="$_mtseg_root/.venv"
export PATH="$VIRTUAL_ENV/bin:$PATH"
export LIBTORCH_USE_PYTORCH=1
unset _mtseg_root
