#!/usr/bin/env bash
# Install the LaTeX packages the paper stage needs, when that needs no password: as root, or with
# passwordless sudo, on a machine with apt-get. Otherwise say what to run and succeed anyway (the
# pipeline then builds everything but the PDF and prints the same line). Used by `make reproduce`
# and by .ci/run: one package list.
set -uo pipefail
PKGS="texlive-latex-base texlive-latex-recommended texlive-latex-extra latexmk texlive-fonts-recommended poppler-utils"
command -v latexmk >/dev/null && exit 0
if ! command -v apt-get >/dev/null; then
  echo "install-tex: latexmk not found and no apt-get; install a TeX distribution with latexmk to get the PDF" >&2
  exit 0
fi
if [ "$(id -u)" = 0 ]; then SUDO=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"
else
  echo "install-tex: latexmk not found; to get the paper PDF run: sudo apt-get install $PKGS" >&2
  exit 0
fi
echo "install-tex: latexmk not found; installing LaTeX with apt-get (about a minute): $PKGS" >&2
start=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null || true
if $SUDO apt-get install -y -q $PKGS >/dev/null; then
  echo "install-tex: LaTeX installed in $(( $(date +%s) - start )) s" >&2
else
  echo "install-tex: apt-get failed; the pipeline runs without the PDF" >&2
fi
exit 0
