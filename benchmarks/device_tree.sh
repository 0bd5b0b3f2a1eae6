#!/usr/bin/env bash
# Keep the tree that the device tool sends under its 64 MiB: the CIFAR-10 zip
# in .device/ is 63.3 MB, so the tracked result files and the docs' images,
# which the device machine does not need, must stay behind for the call.
#
#     bash benchmarks/device_tree.sh slim      # before the device call(s)
#     bash benchmarks/device_tree.sh restore   # after them, before committing
#
# `slim` takes those files out of the index (the work tree keeps them) and
# lists them in .git/info/exclude; `restore` puts both back. Nothing is
# committed in between.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
git_dir=$(git rev-parse --git-dir)
list="$git_dir/device-slimmed.txt"
exclude="$git_dir/info/exclude"
case ${1:-} in
slim)
    [ ! -f "$list" ] || { echo "already slimmed ($list)" >&2; exit 1; }
    git diff --cached --quiet || { echo "the index has staged changes" >&2; exit 1; }
    git ls-files 'benchmarks/results/*.jsonl' 'docs/*.png' >"$list"
    cp "$exclude" "$list.exclude"
    sed 's|^|/|' "$list" >>"$exclude"
    xargs git rm -q --cached -- <"$list"
    echo "slimmed $(wc -l <"$list") files; restore them after the device calls"
    ;;
restore)
    [ -f "$list" ] || { echo "nothing to restore" >&2; exit 1; }
    mv "$list.exclude" "$exclude"
    xargs git reset -q -- <"$list"
    rm "$list"
    git status --short
    ;;
*)
    echo "usage: bash benchmarks/device_tree.sh slim|restore" >&2
    exit 2
    ;;
esac
