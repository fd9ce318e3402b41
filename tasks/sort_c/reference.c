/* sort_c reference (trusted): the C library's qsort, the yardstick a candidate's speedup is measured
 * against in the same evaluation. Compiled by the evaluator, never by the candidate. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

static int compare_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

void sort_u32(uint32_t *keys, size_t n) {
    qsort(keys, n, sizeof *keys, compare_u32);
}
