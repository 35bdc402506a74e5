#!/bin/sh
# Build the plugin as one folder that runs with no Python installed (PyInstaller onedir) and
# holds exactly one executable file: Velero starts every executable file under /plugins,
# recursively (velero pkg/plugin/clientmgmt/process/registry.go:130-187), so the bundled shared
# libraries lose their exec bit (the dynamic loader does not need it).
#
#   merkle_backup/plugin/image/build.sh [OUTDIR]      # default: dist/
#     -> OUTDIR/merkle-backup-velero-plugin/merkle-backup-velero-plugin (+ _internal/)
#
# Needs: this package and its dependencies installed, and PyInstaller (pip install '.[freeze]').
# ENTRY and NAME override the entry script and the bundle's name (the tests freeze their own
# test ObjectStore this way).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "${1:-dist}" && cd "${1:-dist}" && pwd)
entry=${ENTRY:-$here/entry.py}
name=${NAME:-merkle-backup-velero-plugin}
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# --collect-submodules: the store is imported by name at the first Init (server.main), and
# boto3/botocore load their service data at run time.
# The installed package is frozen (with its compiled engine), wherever it lives: site-packages,
# or the checkout for an editable install (whose import hook PyInstaller does not follow).
cd "$work"
pkgroot=$("$python" -c 'import os, merkle_backup; print(os.path.dirname(os.path.dirname(merkle_backup.__file__)))')
"$python" -m PyInstaller --noconfirm --clean --log-level WARN --onedir --name "$name" \
    --distpath "$out" --workpath "$work/build" --specpath "$work" --paths "$pkgroot" \
    --collect-submodules merkle_backup --collect-data botocore --collect-data boto3 \
    --exclude-module tkinter --exclude-module matplotlib --exclude-module pytest \
    --exclude-module hypothesis --exclude-module moto --exclude-module grpc_tools \
    "$entry"

bundle=$out/$name
find "$bundle" -type f ! -path "$bundle/$name" -perm /111 -exec chmod a-x {} +
count=$(find "$bundle" -type f -perm /111 | wc -l)
if [ "$count" -ne 1 ] || [ ! -x "$bundle/$name" ]; then
    echo "build-plugin: expected exactly one executable file in $bundle, found $count" >&2
    exit 1
fi
echo "$bundle/$name"
