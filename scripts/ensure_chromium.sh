#!/usr/bin/env sh
# tests/test_book_render.py opens the rendered book in headless Chromium (Debian's package).
# Install it when missing; MLSEARCH_NO_BROWSER=1 skips that test instead, MLSEARCH_CHROMIUM names another binary.
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || [ -n "$MLSEARCH_CHROMIUM" ] \
  || [ "$MLSEARCH_NO_BROWSER" = 1 ]; then
  exit 0
fi
[ "$(id -u)" = 0 ] && SUDO= || SUDO="sudo -n"
echo "installing chromium (apt-get) for tests/test_book_render.py"
$SUDO sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium' \
  >/dev/null 2>&1 || echo "could not install chromium: tests/test_book_render.py will fail (MLSEARCH_NO_BROWSER=1 skips it)"
