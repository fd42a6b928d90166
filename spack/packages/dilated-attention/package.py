# Spack recipe for dilated-attention.
#
#   spack repo add <checkout>/spack
#   spack develop --path <checkout> dilated-attention@develop
#   spack install dilated-attention@develop +openmp
#   spack install dilated-attention@develop +cuda cuda_arch=90 +mpi +nccl
#
# (The package has no published repository or release tarball yet, so it is
# built from a checkout with `spack develop`; `git = ...` is added on
# publication, which also lets `spack audit packages` run on it.)
from spack.package import *


class DilatedAttention(CMakePackage, CudaPackage):
    """LongNet-style dilated attention (and the dense, causal and block-sparse
    attention it is built from) on Kokkos Views, with an H100 backend."""

    homepage = "https://arxiv.org/abs/2307.02486"
    maintainers("dilated-attention-developers")
    license("BSD-3-Clause")

    version("develop")

    variant("openmp", default=True, description="Use a Kokkos with the OpenMP backend")
    variant("mpi", default=False, description="MPI transport for sequence parallelism")
    variant("nccl", default=False, description="NCCL transport for sequence parallelism")
    variant("hwloc", default=True, description="NUMA-aware host workspace allocation")
    variant("tests", default=False, description="Build and install-test the unit tests")

    depends_on("cxx", type="build")  # Spack v1.x: declare the language
    depends_on("cmake@3.21:", type="build")
    depends_on("kokkos@3.4:5")
    depends_on("kokkos-kernels@3.4:5")
    depends_on("kokkos+openmp", when="+openmp")
    depends_on("kokkos+serial", when="~openmp")
    depends_on("mpi", when="+mpi")
    depends_on("nccl+cuda cuda_arch=90", when="+nccl")
    depends_on("hwloc", when="+hwloc")
    depends_on("pkgconfig", type="build", when="+hwloc")
    # +tests builds the GoogleTest suite, so GoogleTest is needed to build.
    depends_on("googletest", type=("build", "link"), when="+tests")

    # The cuda_fa3 backend is plain CUDA for Hopper (sm_90a, CUDA 12.3+).
    depends_on("cuda@12.3:", when="+cuda")
    conflicts("+nccl", when="~cuda", msg="NCCL moves device data: needs +cuda")
    for _arch in CudaPackage.cuda_arch_values:
        if _arch not in ("90", "90a"):
            conflicts("+cuda", when=f"cuda_arch={_arch}",
                      msg="the cuda_fa3 backend targets Hopper only (cuda_arch=90)")

    def cmake_args(self):
        args = [
            self.define_from_variant("DILATED_ENABLE_CUDA", "cuda"),
            self.define_from_variant("DILATED_ENABLE_MPI", "mpi"),
            self.define_from_variant("DILATED_ENABLE_NCCL", "nccl"),
            self.define_from_variant("DILATED_ENABLE_HWLOC", "hwloc"),
            self.define_from_variant("DILATED_ENABLE_TESTS", "tests"),
            self.define("DILATED_ENABLE_BENCHMARKS", False),
            self.define("DILATED_ENABLE_EXAMPLES", False),
        ]
        if self.spec.satisfies("+cuda"):
            # Hopper-specific instructions (wgmma, TMA) need the "a" target.
            args.append(self.define("CMAKE_CUDA_ARCHITECTURES", "90a"))
        return args
