"""The built-in selection rules: what is unambiguously not user data.

Every pattern is gitignore syntax, matched by pathspec against the path of an
entry relative to its source root (folders end in ``/``): a pattern with an
inner slash is anchored there (the home folder's own caches, ``.cargo/git/``),
so a project's caches, found at any depth, start with ``**/``.  A pattern here must
never drop real content by a name that real content also uses: a folder named
``venv`` or ``build`` may hold source code, so virtual environments are
recognised by their ``pyvenv.cfg`` file (see ``MARKER_FILES``), not by name.
"""

from __future__ import annotations

BUILTIN_IGNORES: tuple[str, ...] = (
    # Python caches and tool caches
    "__pycache__/",
    "*.py[cod]",
    "*$py.class",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".hypothesis/",
    ".tox/",
    ".nox/",
    ".pyre/",
    ".pytype/",
    ".ipynb_checkpoints/",
    ".dmypy.json",
    # generic caches (XDG cache home and friends)
    ".cache/",
    ".sass-cache/",
    ".parcel-cache/",
    ".eslintcache",
    ".stylelintcache",
    ".turbo/",
    "**/.next/cache/",
    ".nuxt/",
    "**/.angular/cache/",
    "**/.gradle/caches/",
    "**/.gradle/wrapper/dists/",
    "**/.gradle/daemon/",
    "**/.gradle/native/",
    # JavaScript dependencies and package manager homes
    "node_modules/",
    "bower_components/",
    "jspm_packages/",
    ".npm/",
    ".pnpm-store/",
    "**/.yarn/cache/",
    "**/.yarn/unplugged/",
    "**/.yarn/install-state.gz",
    ".bun/install/cache/",
    ".deno/",
    # Python toolchains and package homes
    ".pyenv/",
    ".local/share/virtualenvs/",
    ".local/pipx/venvs/",
    ".local/share/pipx/venvs/",
    ".conda/pkgs/",
    "miniconda3/pkgs/",
    "anaconda3/pkgs/",
    ".poetry/",
    ".pdm-build/",
    ".local/share/uv/",
    # Rust, Go, Java, Haskell, OCaml, Ruby toolchains and package caches
    ".rustup/",
    ".cargo/registry/",
    ".cargo/git/",
    ".cargo/bin/",          # rustup's proxies and `cargo install`ed binaries: reinstallable
    ".m2/repository/",
    ".ivy2/cache/",
    ".sbt/boot/",
    ".coursier/",
    "go/pkg/mod/",
    ".stack/programs/",
    ".stack/snapshots/",
    ".stack/indices/",
    ".cabal/packages/",
    ".ghcup/",
    ".opam/",
    ".gem/ruby/",          # installed gems; ~/.gem/credentials stays
    ".gem/specs/",
    ".rbenv/",
    ".nvm/",
    ".volta/",
    ".sdkman/candidates/",
    ".dotnet/",
    ".nuget/packages/",
    ".android/cache/",
    ".vscode-server/",
    ".cursor-server/",
    # editors, browsers and desktop litter that is regenerated
    ".local/share/Trash/",
    ".thumbnails/",
    ".local/share/recently-used.xbel",
    "*.swp",
    "*.swo",
    "*~",
    ".*.un~",
    ".netrwhist",
    ".DS_Store",
    ".Spotlight-V100/",
    ".Trashes/",
    ".fseventsd/",
    "Thumbs.db",
    "ehthumbs.db",
    "desktop.ini",
    "$RECYCLE.BIN/",
    ".directory.lock",
    # snapback's own working files
    ".snapback/",
    ".~snapback-*.tmp",
)

# Folders holding one of these files are left out whatever their name:
# CACHEDIR.TAG is the Cache Directory Tagging standard (tar, borg, restic honour
# it); pyvenv.cfg marks a Python virtual environment (PEP 405).
MARKER_FILES: tuple[str, ...] = ("CACHEDIR.TAG", "pyvenv.cfg")

BUILTIN_EXCEPTIONS: tuple[str, ...] = ("**/templates/**",)
