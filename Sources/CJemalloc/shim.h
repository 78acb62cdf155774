#ifndef CSMR_CJEMALLOC_SHIM_H
#define CSMR_CJEMALLOC_SHIM_H
#include <stddef.h>
// Only the control entry point is declared: including <jemalloc/jemalloc.h> would redeclare
// malloc and friends next to glibc's, which the Clang importer rejects. The symbol comes from
// libjemalloc (Debian: libjemalloc-dev), which also replaces malloc for the whole process.
int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen);
#endif
