/* The liblsl that the `lsl` crate builds bundles Boost 1.69, whose thread code tests
 * `#if PTHREAD_STACK_MIN > 0`. Since glibc 2.34 (with _GNU_SOURCE, which g++ always defines)
 * PTHREAD_STACK_MIN is a sysconf() call that the preprocessor cannot evaluate, so the build
 * fails. .cargo/config.toml puts this directory on CPLUS_INCLUDE_PATH: the real header is
 * included, then the macro is pinned to glibc's static value. Nothing else changes. */
#include_next <pthread.h>
#if defined(__USE_DYNAMIC_STACK_SIZE) && __USE_DYNAMIC_STACK_SIZE
#undef PTHREAD_STACK_MIN
#if defined(__aarch64__)
#define PTHREAD_STACK_MIN 131072
#else
#define PTHREAD_STACK_MIN 16384
#endif
#endif
