#!/bin/sh
# Debian's Chromium for the JupyterLab browser tests (tests/test_browser_*.py), and a colour
# emoji font so the checks' ✅/❌ show in screenshots. Never a browser downloaded by a test
# tool: Playwright drives /usr/bin/chromium. Installs only as root with apt-get; otherwise
# says what is missing and leaves the choice to `make test` (which then runs Run All
# headless instead).
set -u
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: no /usr/bin/chromium, and apt-get is not usable here;" \
         "install Debian's chromium to run the JupyterLab browser tests" >&2
    exit 0
fi
echo "install_browser: installing Debian's chromium (once)"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends \
        chromium fonts-noto-color-emoji >/dev/null; }; then
    echo "install_browser: apt-get could not install chromium" >&2
fi
exit 0
