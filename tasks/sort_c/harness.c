/* sort_c harness (frozen, trusted): reads arrays of uint32 keys on stdin, sorts each with the
 * candidate's sort_u32 (or the reference's), writes the sorted keys to stdout. No timing here:
 * the evaluator times the whole process from outside (evoforge.evaluators.binary.run_binary).
 *
 * stdin:  uint64 rounds, uint64 n_arrays, then per array: uint64 n, n x uint32 keys (little-endian)
 * stdout: per array, the n keys after the last round
 * Each array is sorted `rounds` times, each time from a fresh copy of its input, so the sort dominates
 * the time spent reading and writing.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sort_u32(uint32_t *keys, size_t n);

static void read_exact(void *buf, size_t size) {
    if (size && fread(buf, 1, size, stdin) != size) {
        fprintf(stderr, "harness: truncated input\n");
        exit(3);
    }
}

int main(void) {
    uint64_t rounds, arrays;
    read_exact(&rounds, sizeof rounds);
    read_exact(&arrays, sizeof arrays);
    for (uint64_t a = 0; a < arrays; a++) {
        uint64_t n;
        read_exact(&n, sizeof n);
        uint32_t *input = malloc(n * sizeof *input + 1);
        uint32_t *work = malloc(n * sizeof *work + 1);
        if (!input || !work) {
            fprintf(stderr, "harness: out of memory\n");
            return 4;
        }
        read_exact(input, n * sizeof *input);
        for (uint64_t r = 0; r < rounds; r++) {
            memcpy(work, input, n * sizeof *work);
            sort_u32(work, (size_t)n);
        }
        if (fwrite(work, sizeof *work, n, stdout) != n) {
            fprintf(stderr, "harness: short write\n");
            return 5;
        }
        free(input);
        free(work);
    }
    return fflush(stdout) == 0 ? 0 : 5;
}
