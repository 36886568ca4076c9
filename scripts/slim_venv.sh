#!/bin/sh
# Slims a run-time virtual environment in an image's builder stage:
#   sh slim_venv.sh VENV MODULE...
# - removes pip and setuptools (the running service never installs anything);
# - strips the symbol tables of the extension modules that carry them (ml_dtypes' 25 MB library is 1 MB
#   stripped), leaving alone every library auditwheel repaired (an RPATH/RUNPATH, or inside a `*.libs`
#   folder): patchelf moved their program headers, and stripping such a file breaks it at load time
#   ("ELF load command address/offset not page-aligned", seen with numpy's OpenBLAS);
# - imports each MODULE with the slimmed environment, so a broken library fails the build, not the service.
set -eu
venv=$1
shift
"$venv/bin/pip" uninstall -q -y pip setuptools
find "$venv" -name '*.so' -type f ! -path '*.libs/*' | while read -r library; do
    if ! readelf -d "$library" | grep -q 'R\(UN\)\{0,1\}PATH'; then
        strip --strip-unneeded "$library"
    fi
done
for module in "$@"; do
    "$venv/bin/python" -c "import $module"
done
