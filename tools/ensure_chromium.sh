#!/usr/bin/env sh
# `make test` drives the HTML report and the listening test in a headless Chromium
# (tests/views/test_report_listen.py, through Selenium). When Debian's chromium or chromium-driver is missing
# and we are root on a Debian-family system (CI is), install both (about 300 MB; never a downloaded
# browser); otherwise say what to install. In CI (CI set) a failed install fails `make test`, and the
# browser tests themselves fail without a browser.
set -eu
have() { command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; }
have && { echo "ensure_chromium: $(chromium --version 2>/dev/null | head -1), $(chromedriver --version | head -1)"; exit 0; }
PKGS="chromium chromium-driver"
in_ci() { case "${CI:-}" in "" | 0 | false | False | FALSE) return 1 ;; *) return 0 ;; esac; }
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: installing the headless browser for the report tests: apt-get install $PKGS"
    export DEBIAN_FRONTEND=noninteractive
    if apt-get update -qq && apt-get install -y -qq --no-install-recommends $PKGS >/dev/null && have; then
        echo "ensure_chromium: installed $(chromium --version 2>/dev/null | head -1)"
        exit 0
    fi
    echo "ensure_chromium: the install failed" >&2
else
    echo "ensure_chromium: chromium and chromedriver are missing; install $PKGS (Debian/Ubuntu)" >&2
fi
if in_ci; then exit 1; fi
echo "ensure_chromium: the browser tests will be skipped (they fail in CI)" >&2
