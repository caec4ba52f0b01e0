# cmake/aarch64-linux-gnu.cmake — toolchain file: cross-build sparrow for 64-bit ARM Linux with
# Debian's gcc-aarch64-linux-gnu against the arm64 multiarch -dev packages (/usr/lib/aarch64-linux-gnu,
# headers in /usr/include), tests run through qemu-user. scripts/test-arm.sh installs all of it:
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# SP_ARM64_EXTRA_ROOT (optional): a folder of unpacked arm64 .debs (usr/include, usr/lib/...) searched
# like the system, for a package apt cannot install beside its native twin (criterion, test-arm.sh).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc) # searches /usr/include/aarch64-linux-gnu and /usr/include

# The arm64 libraries live in the host's own tree (multiarch): search / and the cross libc's prefix,
# for libraries and headers only; programs (pkg-config, python) are the build machine's.
set(CMAKE_TRY_COMPILE_PLATFORM_VARIABLES SP_ARM64_EXTRA_ROOT)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu /)
if(SP_ARM64_EXTRA_ROOT)
  list(PREPEND CMAKE_FIND_ROOT_PATH ${SP_ARM64_EXTRA_ROOT})
  # headers found by #include only (criterion) and the libraries' own dependencies at link time
  set(CMAKE_C_FLAGS_INIT "-isystem ${SP_ARM64_EXTRA_ROOT}/usr/include")
  set(_sp_extra_lib ${SP_ARM64_EXTRA_ROOT}/usr/lib/aarch64-linux-gnu)
  set(CMAKE_EXE_LINKER_FLAGS_INIT "-L${_sp_extra_lib} -Wl,-rpath-link,${_sp_extra_lib}")
endif()
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# pkg-config (FindCURL, FindOpenSSL use it for hints): the arm64 .pc files only
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")

# Test binaries run under qemu-user; `-cpu max` has every extension (dotprod, i8mm) so all of
# kernels/neon.c's variants run. -L: where the arm64 dynamic loader and libc come from. With Debian's
# multiarch libc6:arm64 installed (the -dev packages pull it in) that is / itself: loader, libc and
# every library from one build. /usr/aarch64-linux-gnu (the cross libc) only when it is absent: its
# loader would otherwise pair with the multiarch libc.so.6 of another Debian revision.
# (Criterion re-executes each test binary, which qemu-user cannot follow without binfmt_misc:
# scripts/test-arm.sh runs the unit tests with an exec shim rather than through ctest.)
if(EXISTS /lib/ld-linux-aarch64.so.1)
  set(SP_QEMU_LD_PREFIX / CACHE PATH "qemu-aarch64 -L prefix")
else()
  set(SP_QEMU_LD_PREFIX /usr/aarch64-linux-gnu CACHE PATH "qemu-aarch64 -L prefix")
endif()
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -cpu max -L ${SP_QEMU_LD_PREFIX})
