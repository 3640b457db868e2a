# Cached virtualenvs for the identity harness (sourced by scripts/keystone and scripts/tempest).
#
# cached_venv NAME REQUIREMENTS sets CACHED_VENV to the path of a virtualenv holding exactly the
# pinned REQUIREMENTS, outside the git clone so that every clone and CI run on this machine
# reuses it:
# ${GLIMPSE_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/glimpse}/NAME-<hash>, the hash taken over the
# requirements file and the Python version. A changed file means a new hash, so a new build (old
# builds of NAME go once unused for a week); pip's own cache makes a rebuild quicker. A build
# that did not finish has no .complete marker and is redone; concurrent callers wait on a lock.

cached_venv() {
  local name=$1 reqs=$2
  local python=${GLIMPSE_PYTHON:-python3}
  local cache=${GLIMPSE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/glimpse}
  local key venv
  key=$({ "$python" -c 'import sys; print(sys.version)'; cat "$reqs"; } | sha256sum | cut -c1-16)
  venv=$cache/$name-$key
  mkdir -p "$cache"
  (
    flock 9
    if [ ! -e "$venv/.complete" ]; then
      local start=$SECONDS old
      echo "scripts/$name: building $venv" >&2
      rm -rf "$venv"
      "$python" -m venv "$venv" || exit 1
      # The lock file is complete, so no resolving: --no-deps, then pip check proves it.
      # (This machine's pip configuration warns about empty local index folders: noise.)
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        -r "$reqs" 2>&1 | { grep -v 'is ignored: it is neither a file nor a dir' || true; } >&2
      [ "${PIPESTATUS[0]}" = 0 ] || { echo "scripts/$name: pip install failed" >&2; exit 1; }
      "$venv/bin/python" -m pip check >&2 || exit 1
      touch "$venv/.complete"
      echo "scripts/$name: built in $((SECONDS - start)) s" >&2
    fi
    touch "$venv/.complete"  # its time: the last use
    # Other builds of NAME unused for a week go (not at once: a server may still run from one).
    for old in "$cache/$name"-????????????????; do
      if [ "$old" != "$venv" ] && [ -n "$(find "$old/.complete" -mtime +7 2>/dev/null)" ]; then
        rm -rf "$old"
      fi
    done
  ) 9>"$cache/$name.lock" || return 1
  CACHED_VENV=$venv
}
