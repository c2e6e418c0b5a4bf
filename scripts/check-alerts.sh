#!/usr/bin/env bash
# The alert rules of deploy/monitoring/: `promtool check rules` and their
# unit tests (`promtool test rules`, deploy/monitoring/rules_test.yaml).
# Installs Debian's prometheus package (it has promtool) when promtool is
# missing. The rules live once, in the PrometheusRule; the plain rule file
# promtool reads is its `spec:` cut out.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

command -v promtool >/dev/null 2>&1 || ensure_debs prometheus

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Everything after the line `spec:`, one indentation level (2 spaces) less.
sed -n '/^spec:$/,$p' deploy/monitoring/prometheusrule.yaml | tail -n +2 | sed 's/^  //' >"$dir/rules.yaml"
cp deploy/monitoring/rules_test.yaml "$dir/"
promtool check rules "$dir/rules.yaml"
promtool test rules "$dir/rules_test.yaml"
