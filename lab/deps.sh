#!/usr/bin/env bash
# `make deps`: what the test suite and the demo need outside Python, checked and, where apt-get and
# root are available, installed from Debian's packages. Prints what it finds and what it does; when
# something is still missing it stops with one line naming it and the package that provides it.
#
#   redis-server (package redis-server)   the tests' private Redis, and the demo's when none answers
#   promtool, prometheus (prometheus)     the alert-rule tests and the live scrape test in tests/deploy/
#   nginx with auth_request (nginx-light) the gateway's integration test
set -euo pipefail
PY=${PY:-python3}

# The Python that creates .venv must be 3.11 or later (pyproject.toml: requires-python).
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "deps: $PY is not Python >= 3.11 (found: $("$PY" --version 2>&1 | head -1)); set PY=python3.11 or newer" >&2
  exit 1
fi

# nginx lives in /usr/sbin, which an ordinary user's PATH may lack.
PATH="$PATH:/usr/sbin:/sbin"

# command, then the Debian package that provides it
WANTED=(redis-server:redis-server promtool:prometheus prometheus:prometheus nginx:nginx-light)

missing_packages() {
  local entry cmd pkg out=()
  for entry in "${WANTED[@]}"; do
    cmd=${entry%%:*} pkg=${entry##*:}
    if ! command -v "$cmd" >/dev/null 2>&1; then
      out+=("$pkg")
    elif [ "$cmd" = nginx ] && ! nginx -V 2>&1 | grep -q http_auth_request_module; then
      out+=("$pkg")  # an nginx built without auth_request cannot run the gateway test
    fi
  done
  [ ${#out[@]} -eq 0 ] || printf '%s\n' "${out[@]}" | sort -u | paste -sd ' '
}

missing=$(missing_packages)
if [ -n "$missing" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "deps: installing from Debian: $missing"
    echo "+ apt-get update -qq"
    echo "+ apt-get install -y -qq --no-install-recommends $missing"
    # shellcheck disable=SC2086 # one word per package
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
           $missing >/dev/null; }; then
      echo "deps: apt-get could not install $missing (its error is above)" >&2
      exit 1
    fi
    missing=$(missing_packages)
  fi
fi
if [ -n "$missing" ]; then
  echo "deps: missing Debian packages: $missing; install them as root: apt-get install $missing" >&2
  exit 1
fi
for entry in "${WANTED[@]}"; do
  cmd=${entry%%:*}
  echo "deps: $cmd: $(command -v "$cmd")"
done
