/* sort_c: sort n unsigned 32-bit keys in place, ascending, as fast as possible.
 * Only the region between the EVOLVE-BLOCK markers evolves. The program is compiled with the
 * task's harness (harness.c) by the compile stage in task.toml; the evaluator feeds it random
 * arrays on stdin, checks every output against its own sort and times the process from outside. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// EVOLVE-BLOCK-START
/* Bottom-up merge sort with an insertion sort for short runs. */
static void insertion_sort(uint32_t *a, size_t n) {
    for (size_t i = 1; i < n; i++) {
        uint32_t key = a[i];
        size_t j = i;
        while (j > 0 && a[j - 1] > key) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = key;
    }
}

void sort_u32(uint32_t *keys, size_t n) {
    const size_t run = 16;
    for (size_t lo = 0; lo < n; lo += run) {
        insertion_sort(keys + lo, n - lo < run ? n - lo : run);
    }
    uint32_t *buf = malloc(n * sizeof *buf + 1);
    if (!buf) {
        return;
    }
    uint32_t *src = keys, *dst = buf;
    for (size_t width = run; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n;
            size_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                dst[k++] = src[i] <= src[j] ? src[i++] : src[j++];
            }
            while (i < mid) {
                dst[k++] = src[i++];
            }
            while (j < hi) {
                dst[k++] = src[j++];
            }
        }
        uint32_t *t = src;
        src = dst;
        dst = t;
    }
    if (src != keys) {
        memcpy(keys, src, n * sizeof *keys);
    }
    free(buf);
}
// EVOLVE-BLOCK-END
