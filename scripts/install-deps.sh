#!/usr/bin/env bash
# Installs everything dilated-attention needs on a fresh Debian bookworm machine.
# Idempotent: every step checks first and skips what is already there.
#
#   * Debian packages: hwloc, OpenMPI, GoogleTest, Google Benchmark, ninja, OpenBLAS.
#   * Kokkos 3.4.01 (Serial + OpenMP) and Kokkos Kernels 3.4.01, built from the
#     `trilinos` 13.2 *source* package of bookworm (the binary Trilinos Kokkos is
#     Serial-only). Installed into a cache outside the repository:
#       ${DILATED_DEPS_PREFIX:-$HOME/.cache/dilated-attention/deps}
#   * The same Kokkos built by clang++-14 with LLVM's libomp, in <prefix>/clang,
#     for the TSan and libFuzzer builds (see step 3).
#
# Prints the install prefix on its last line so callers can use
#   prefix=$(scripts/install-deps.sh | tail -n1)
set -euo pipefail

PREFIX=${DILATED_DEPS_PREFIX:-$HOME/.cache/dilated-attention/deps}
KOKKOS_VERSION=3.4.01            # the version shipped inside trilinos 13.2
TRILINOS_SRC_VERSION=13.2.0      # bookworm's trilinos source package
JOBS=${DILATED_DEPS_JOBS:-$(nproc)}
log() { printf '[install-deps] %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# --- 1. Debian packages -----------------------------------------------------
pkgs=(cmake ninja-build g++ libhwloc-dev hwloc libopenmpi-dev openmpi-bin
      libgtest-dev libgmock-dev googletest libbenchmark-dev libopenblas-dev dpkg-dev
      clang-14 libclang-rt-14-dev libomp-14-dev)  # clang: TSan (with Archer) and libFuzzer builds
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
else
  log "Debian packages already installed"
fi

# Fetches and extracts Kokkos + Kokkos Kernels sources once per run into $work
# and sets $src (their parent directory). DILATED_TRILINOS_TARBALL may name a
# local copy of trilinos_*.orig.tar.* to skip the download.
src=""
kokkos_sources() {
  [ -n "$src" ] && return 0
  work=$(mktemp -d "${TMPDIR:-/tmp}/dilated-deps.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  if [ -n "${DILATED_TRILINOS_TARBALL:-}" ]; then
    tarball=$DILATED_TRILINOS_TARBALL
  else
    log "fetching trilinos ${TRILINOS_SRC_VERSION} source package into $work"
    # A private deb-src list made from the machine's own Debian entry, with private
    # apt state, so the system's lists are never edited.
    mkdir -p "$work/apt/lists/partial" "$work/apt/cache/archives/partial"
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      sed 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$work/apt/src.sources"
      srclist="$work/apt/src.sources"
    else
      grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /' > "$work/apt/src.list"
      srclist="$work/apt/src.list"
    fi
    aptopts=(-o "Dir::Etc::SourceList=$srclist" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache"
             -o APT::Sandbox::User=root)
    apt-get "${aptopts[@]}" update -qq >&2
    (cd "$work" && apt-get "${aptopts[@]}" source --download-only "trilinos=${TRILINOS_SRC_VERSION}-4" >&2 \
       || apt-get "${aptopts[@]}" source --download-only trilinos >&2)
    tarball=$(ls "$work"/trilinos_*.orig.tar.* | head -n1)
  fi
  log "extracting packages/kokkos and packages/kokkos-kernels"
  tar -xf "$tarball" -C "$work" --wildcards '*/packages/kokkos/*' '*/packages/kokkos-kernels/*'
  src=$(ls -d "$work"/Trilinos-*/packages)
}

# --- 2. Kokkos + Kokkos Kernels from bookworm's trilinos source package -----
stamp="$PREFIX/.kokkos-${KOKKOS_VERSION}-kernels-${KOKKOS_VERSION}.done"
if [ -f "$stamp" ]; then
  log "Kokkos ${KOKKOS_VERSION} + Kokkos Kernels cached in $PREFIX"
else
  kokkos_sources

  log "building Kokkos ${KOKKOS_VERSION} (Serial + OpenMP, shared)"
  cmake -S "$src/kokkos" -B "$work/build-kokkos" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" \
    -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
    -DKokkos_ENABLE_SERIAL=ON -DKokkos_ENABLE_OPENMP=ON \
    -DKokkos_ENABLE_TESTS=OFF -DKokkos_ENABLE_EXAMPLES=OFF >&2
  cmake --build "$work/build-kokkos" -j "$JOBS" >&2
  cmake --install "$work/build-kokkos" >&2

  # Kokkos Kernels: we use only its header-only team/batched kernels, so no
  # explicit template instantiation (ETI) is built; that keeps the build to
  # a minute instead of eleven.
  log "building Kokkos Kernels ${KOKKOS_VERSION} (header-only use, no ETI)"
  cmake -S "$src/kokkos-kernels" -B "$work/build-kk" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$PREFIX" \
    -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON -DKokkos_ROOT="$PREFIX" \
    -DKokkosKernels_ADD_DEFAULT_ETI=OFF \
    -DKokkosKernels_INST_DOUBLE=OFF -DKokkosKernels_INST_FLOAT=OFF \
    -DKokkosKernels_INST_COMPLEX_DOUBLE=OFF -DKokkosKernels_INST_COMPLEX_FLOAT=OFF \
    -DKokkosKernels_INST_ORDINAL_INT=OFF -DKokkosKernels_INST_ORDINAL_INT64_T=OFF \
    -DKokkosKernels_INST_OFFSET_INT=OFF -DKokkosKernels_INST_OFFSET_SIZE_T=OFF \
    -DKokkosKernels_INST_LAYOUTLEFT=OFF -DKokkosKernels_INST_LAYOUTRIGHT=OFF \
    -DKokkosKernels_ENABLE_TESTS=OFF -DKokkosKernels_ENABLE_EXAMPLES=OFF \
    -DKokkosKernels_ENABLE_TPL_BLAS=OFF >&2
  cmake --build "$work/build-kk" -j "$JOBS" >&2
  cmake --install "$work/build-kk" >&2
  touch "$stamp"
  log "Kokkos + Kokkos Kernels installed in $PREFIX"
fi

# --- 3. Kokkos built by clang with LLVM's OpenMP runtime ----------------------
# For the TSan preset and the libFuzzer target (scripts/run-tests.sh). GCC's
# libgomp synchronises through futexes that TSan cannot see, so every OpenMP
# region would report false races; LLVM's libomp + Archer (libarcher.so) tell
# TSan about OpenMP's synchronisation. libFuzzer exists only in clang. Kokkos
# Kernels is used header-only, so the GCC-built one in $PREFIX serves both.
CLANG_PREFIX="$PREFIX/clang"
clang_stamp="$CLANG_PREFIX/.kokkos-${KOKKOS_VERSION}-clang14-libomp.done"
if [ -f "$clang_stamp" ]; then
  log "clang-built Kokkos ${KOKKOS_VERSION} cached in $CLANG_PREFIX"
else
  kokkos_sources
  log "building Kokkos ${KOKKOS_VERSION} with clang++-14 + libomp (Serial + OpenMP, shared)"
  cmake -S "$src/kokkos" -B "$work/build-kokkos-clang" -G Ninja \
    -DCMAKE_CXX_COMPILER=clang++-14 -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_INSTALL_PREFIX="$CLANG_PREFIX" \
    -DCMAKE_CXX_STANDARD=17 -DBUILD_SHARED_LIBS=ON -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
    -DKokkos_ENABLE_SERIAL=ON -DKokkos_ENABLE_OPENMP=ON \
    -DKokkos_ENABLE_TESTS=OFF -DKokkos_ENABLE_EXAMPLES=OFF >&2
  cmake --build "$work/build-kokkos-clang" -j "$JOBS" >&2
  cmake --install "$work/build-kokkos-clang" >&2
  touch "$clang_stamp"
fi
echo "$PREFIX"
