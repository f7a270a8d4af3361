#!/usr/bin/env bash
# Install everything the tests need (Debian packages, the project with its test extras)
# and run the whole suite. Run as root on Debian, or as a user with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
packages=$(grep -v '^#' scripts/apt-packages.txt | tr '\n' ' ')
# postfix asks how to configure itself; we only need its tools (smtp-source, smtp-sink).
echo "postfix postfix/main_mailer_type select No configuration" | $sudo debconf-set-selections
if ! dpkg -s $packages >/dev/null 2>&1; then
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check -e ".[test]"
# the linter first: a finding fails the run before the tests start
python3 -m ruff check .
# two test processes (pytest-xdist), each taking whole modules: the tests mostly wait on
# servers and clients, so two share a 2-CPU machine well (29 -> 18 minutes); TEST_WORKERS=0
# runs them in one process
exec python3 -m pytest -q -p no:cacheprovider -n "${TEST_WORKERS:-2}" --dist loadfile "$@"
